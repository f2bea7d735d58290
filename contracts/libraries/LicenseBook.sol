// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Arrays} from "@openzeppelin/contracts/utils/Arrays.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {ITwinLedgerTypes} from "../interfaces/ITwinLedgerTypes.sol";
import {LicenseCodec} from "./LicenseCodec.sol";

/// @title License versions of every (twin, brand) pair
/// @notice The current (accepted) version of a pair is one storage word (see {LicenseCodec}); replaced
/// versions move to an ordered history whose windows are disjoint, so the version covering any past time
/// is found by binary search. A new version waits as an offer (one per pair, with the hash of its terms)
/// until the brand accepts it. Usage types that do not fit inline live in an overflow mapping per version.
/// @dev Offer, accept, decline, revoke and decode are external (linked) functions to keep the ledger under the code-size
/// limit; the settlement hot path ({lookup}) is internal and inlined into the ledger.
library LicenseBook {
    using LicenseCodec for uint256;
    using Arrays for uint256[];

    struct Book {
        mapping(uint256 twinId => mapping(address brand => uint256 word)) current;
        mapping(uint256 twinId => mapping(address brand => uint256[] words)) history;
        mapping(uint256 twinId => mapping(address brand => mapping(uint256 version => uint256 typeMask))) overflowTypes;
        mapping(uint256 twinId => mapping(address brand => mapping(uint256 version => mapping(uint8 usageType => uint256))))
            overflowPrices;
        mapping(uint256 twinId => mapping(address brand => uint256 word)) offers;
        mapping(uint256 twinId => mapping(address brand => bytes32 termsHash)) offerHashes;
    }

    uint256 internal constant MAX_PRICES = 16;
    uint256 internal constant MAX_PRICE = type(uint96).max;
    uint256 internal constant NOT_IN_HISTORY = type(uint256).max;
    uint256 private constant _OVERFLOW_PRESENT = 1 << 255;

    bytes32 internal constant USAGE_PRICE_TYPEHASH = keccak256("UsagePrice(uint8 usageType,uint256 price)");
    bytes32 internal constant LICENSE_TERMS_TYPEHASH = keccak256(
        "LicenseTerms(address brand,uint40 validFrom,uint40 validUntil,uint32 maxUses,bytes32 purposeHash,"
        "bytes32 consentHash,UsagePrice[] prices)UsagePrice(uint8 usageType,uint256 price)"
    );

    /// @notice Offers `terms` for `twinId` as the pair's next version, replacing an offer still waiting.
    /// Emits {ITwinLedgerTypes-LicenseOfferWithdrawn} for a replaced offer and {ITwinLedgerTypes-LicenseOffered}.
    function offer(Book storage book, uint256 twinId, ITwinLedgerTypes.LicenseTerms calldata terms) external {
        address brand = terms.brand;
        if (brand == address(0)) revert ITwinLedgerTypes.LicenseInvalidBrand(brand);
        // Stored times are uint32 (until 2106): a later time means "until then".
        uint40 from = uint40(Math.min(terms.validFrom, LicenseCodec.MAX_TIME));
        uint40 until = uint40(Math.min(terms.validUntil, LicenseCodec.MAX_TIME));
        // slither-disable-next-line timestamp
        if (until <= Math.max(from, block.timestamp)) revert ITwinLedgerTypes.LicenseInvalidWindow(from, terms.validUntil);
        uint256 count = terms.prices.length;
        if (count == 0) revert ITwinLedgerTypes.LicenseNoPrices();
        if (count > MAX_PRICES) revert ITwinLedgerTypes.LicenseTooManyPrices(count, MAX_PRICES);

        uint256 version = nextVersion(book, twinId, brand);
        if (book.offers[twinId][brand] != 0) {
            _dropOffer(book, twinId, brand, version);
            emit ITwinLedgerTypes.LicenseOfferWithdrawn(twinId, brand, version);
        }
        bytes32 termsHash = hashTerms(terms);
        book.offers[twinId][brand] = _encodeTerms(book, twinId, version, from, until, terms);
        book.offerHashes[twinId][brand] = termsHash;
        emit ITwinLedgerTypes.LicenseOffered(
            twinId,
            brand,
            version,
            from,
            until,
            terms.maxUses,
            terms.purposeHash,
            terms.consentHash,
            terms.prices,
            termsHash
        );
    }

    /// @notice The brand accepts the waiting offer `version` with `termsHash`: it becomes the current
    /// version from the later of its start and now, and earlier versions end there.
    /// Emits {ITwinLedgerTypes-LicenseAccepted}.
    function accept(Book storage book, uint256 twinId, address brand, uint256 version, bytes32 termsHash)
        external
    {
        uint256 word = book.offers[twinId][brand];
        if (word == 0) revert ITwinLedgerTypes.LicenseNoOffer(twinId, brand);
        if (version != nextVersion(book, twinId, brand) || termsHash != book.offerHashes[twinId][brand]) {
            revert ITwinLedgerTypes.LicenseOfferMismatch(twinId, brand, version, termsHash);
        }
        uint40 from = uint40(Math.max(word.validFrom(), block.timestamp));
        // slither-disable-next-line timestamp
        if (word.validUntil() <= from) revert ITwinLedgerTypes.LicenseOfferExpired(twinId, brand, version);
        delete book.offers[twinId][brand];
        delete book.offerHashes[twinId][brand];

        uint256[] storage history = book.history[twinId][brand];
        uint256 current = book.current[twinId][brand];
        if (current.has(LicenseCodec.EXISTS)) {
            history.push(current);
            // Earlier versions end where the new one starts: windows stay disjoint and ordered.
            for (uint256 i = history.length; i > 0; --i) {
                uint256 earlier = history[i - 1];
                if (earlier.validUntil() <= from) break;
                history[i - 1] = earlier.endedAt(from);
            }
        }
        book.current[twinId][brand] = word.startingAt(from);
        emit ITwinLedgerTypes.LicenseAccepted(twinId, brand, version, from);
    }

    /// @notice The brand declines the waiting offer `version`. Emits {ITwinLedgerTypes-LicenseDeclined}.
    function decline(Book storage book, uint256 twinId, address brand, uint256 version) external {
        _requireOffer(book, twinId, brand, version);
        _dropOffer(book, twinId, brand, version);
        emit ITwinLedgerTypes.LicenseDeclined(twinId, brand, version);
    }

    /// @notice Withdraws the waiting offer `version`, or ends the accepted version `version` and every
    /// version of the pair still running at `block.timestamp`.
    /// Emits {ITwinLedgerTypes-LicenseOfferWithdrawn} or {ITwinLedgerTypes-LicenseRevoked}.
    function revoke(Book storage book, uint256 twinId, address brand, uint256 version) external {
        uint256 current = book.current[twinId][brand];
        uint256[] storage history = book.history[twinId][brand];
        if (book.offers[twinId][brand] != 0 && version == nextVersion(book, twinId, brand)) {
            _dropOffer(book, twinId, brand, version);
            emit ITwinLedgerTypes.LicenseOfferWithdrawn(twinId, brand, version);
            return;
        }
        if (!current.has(LicenseCodec.EXISTS)) revert ITwinLedgerTypes.LicenseNotFound(twinId, brand);
        if (version != history.length) revert ITwinLedgerTypes.LicenseVersionMismatch(twinId, brand, version);
        uint40 now40 = uint40(block.timestamp);
        bool changed = false;
        if (current.validUntil() > now40) {
            book.current[twinId][brand] = current.endedAt(now40).withFlag(LicenseCodec.REVOKED);
            changed = true;
        }
        for (uint256 i = history.length; i > 0; --i) {
            uint256 word = history[i - 1];
            if (word.validUntil() <= now40) break;
            history[i - 1] = word.endedAt(now40).withFlag(LicenseCodec.REVOKED);
            changed = true;
        }
        if (!changed) revert ITwinLedgerTypes.LicenseAlreadyEnded(twinId, brand);
        emit ITwinLedgerTypes.LicenseRevoked(twinId, brand, version, now40);
    }

    /// @notice The waiting offer of the pair, its version number and terms hash; reverts if none waits.
    function offerOf(Book storage book, uint256 twinId, address brand)
        external
        view
        returns (ITwinLedgerTypes.License memory terms, uint256 version, bytes32 termsHash)
    {
        uint256 word = book.offers[twinId][brand];
        if (word == 0) revert ITwinLedgerTypes.LicenseNoOffer(twinId, brand);
        version = nextVersion(book, twinId, brand);
        terms = _decode(book, twinId, brand, version, word);
        termsHash = book.offerHashes[twinId][brand];
    }

    /// @notice The number the pair's next accepted version gets (the number of accepted versions).
    function nextVersion(Book storage book, uint256 twinId, address brand) internal view returns (uint256) {
        if (!book.current[twinId][brand].has(LicenseCodec.EXISTS)) return 0;
        return book.history[twinId][brand].length + 1;
    }

    /// @notice Whether an offer waits for the brand's acceptance.
    function hasOffer(Book storage book, uint256 twinId, address brand) internal view returns (bool) {
        return book.offers[twinId][brand] != 0;
    }

    /// @notice Version `version` of the pair with all its prices; reverts if it does not exist.
    function versionAt(Book storage book, uint256 twinId, address brand, uint256 index)
        external
        view
        returns (ITwinLedgerTypes.License memory)
    {
        uint256[] storage history = book.history[twinId][brand];
        uint256 word = 0;
        if (index < history.length) {
            word = history[index];
        } else if (index == history.length && book.current[twinId][brand].has(LicenseCodec.EXISTS)) {
            word = book.current[twinId][brand];
        } else {
            revert ITwinLedgerTypes.LicenseNotFound(twinId, brand);
        }
        return _decode(book, twinId, brand, index, word);
    }

    /// @notice Finds the version covering `at` and the price of `usageType` under it.
    /// @param current the pair's current word (callers may hold a cached copy)
    /// @return result `Paid` when a price applies, else the reason (never `UnknownTwin`)
    /// @return price the price per use
    /// @return word the covering version's word
    /// @return historyIndex its index in the history, `NOT_IN_HISTORY` for the current version
    function lookup(Book storage book, uint256 twinId, address brand, uint256 current, uint8 usageType, uint40 at)
        internal
        view
        returns (ITwinLedgerTypes.Outcome result, uint256 price, uint256 word, uint256 historyIndex)
    {
        historyIndex = NOT_IN_HISTORY;
        if (!current.has(LicenseCodec.EXISTS)) return (ITwinLedgerTypes.Outcome.NoLicense, 0, 0, historyIndex);
        word = current;
        uint256 index = 0;
        if (at < current.validFrom()) {
            uint256[] storage history = book.history[twinId][brand];
            uint256 upper = history.upperBound(LicenseCodec.probe(at));
            if (upper == 0) return (ITwinLedgerTypes.Outcome.LicenseNotStarted, 0, word, historyIndex);
            historyIndex = upper - 1;
            index = historyIndex;
            word = history[historyIndex];
        }
        if (at >= word.validUntil()) {
            ITwinLedgerTypes.Outcome ended =
                word.has(LicenseCodec.REVOKED) ? ITwinLedgerTypes.Outcome.LicenseRevoked : ITwinLedgerTypes.Outcome.LicenseExpired;
            return (ended, 0, word, historyIndex);
        }
        bool found;
        (found, price) = word.inlinePrice(usageType);
        if (!found && word.has(LicenseCodec.HAS_OVERFLOW)) {
            if (historyIndex == NOT_IN_HISTORY) index = book.history[twinId][brand].length;
            uint256 stored = book.overflowPrices[twinId][brand][index][usageType];
            found = stored & _OVERFLOW_PRESENT != 0;
            price = stored & ~_OVERFLOW_PRESENT;
        }
        if (!found) return (ITwinLedgerTypes.Outcome.UsageTypeNotLicensed, 0, word, historyIndex);
        return (ITwinLedgerTypes.Outcome.Paid, price, word, historyIndex);
    }

    /// @notice EIP-712 struct hash of license terms: the terms hash a brand accepts.
    function hashTerms(ITwinLedgerTypes.LicenseTerms calldata terms) public pure returns (bytes32) {
        uint256 count = terms.prices.length;
        bytes32[] memory hashes = new bytes32[](count);
        for (uint256 i = 0; i < count; ++i) {
            hashes[i] = keccak256(abi.encode(USAGE_PRICE_TYPEHASH, terms.prices[i].usageType, terms.prices[i].price));
        }
        return keccak256(
            abi.encode(
                LICENSE_TERMS_TYPEHASH,
                terms.brand,
                terms.validFrom,
                terms.validUntil,
                terms.maxUses,
                terms.purposeHash,
                terms.consentHash,
                keccak256(abi.encodePacked(hashes))
            )
        );
    }

    function _requireOffer(Book storage book, uint256 twinId, address brand, uint256 version) private view {
        if (book.offers[twinId][brand] == 0) revert ITwinLedgerTypes.LicenseNoOffer(twinId, brand);
        if (version != nextVersion(book, twinId, brand)) {
            revert ITwinLedgerTypes.LicenseVersionMismatch(twinId, brand, version);
        }
    }

    /// @dev Deletes the waiting offer and the overflow prices stored for its version.
    function _dropOffer(Book storage book, uint256 twinId, address brand, uint256 version) private {
        uint256 mask = book.overflowTypes[twinId][brand][version];
        for (uint256 t = 0; mask != 0; ++t) {
            if (mask & (1 << t) != 0) {
                delete book.overflowPrices[twinId][brand][version][uint8(t)];
                mask &= ~(1 << t);
            }
        }
        delete book.overflowTypes[twinId][brand][version];
        delete book.offers[twinId][brand];
        delete book.offerHashes[twinId][brand];
    }

    /// @dev Validates the prices, stores overflow prices and returns the license word.
    function _encodeTerms(
        Book storage book,
        uint256 twinId,
        uint256 index,
        uint40 from,
        uint40 until,
        ITwinLedgerTypes.LicenseTerms calldata terms
    ) private returns (uint256) {
        uint256 seen = 0;
        uint256 flagBits = LicenseCodec.EXISTS;
        uint256 entries = 0;
        uint256 inlineCount = 0;
        for (uint256 i = 0; i < terms.prices.length; ++i) {
            uint8 usageType = terms.prices[i].usageType;
            uint256 price = terms.prices[i].price;
            if (seen & (1 << usageType) != 0) revert ITwinLedgerTypes.LicenseDuplicateUsageType(usageType);
            seen |= 1 << usageType;
            if (price > MAX_PRICE) revert ITwinLedgerTypes.LicensePriceTooHigh(usageType, price);
            (bool fits, uint256 entry) = LicenseCodec.inlineEntry(usageType, price);
            if (fits && inlineCount < LicenseCodec.INLINE_ENTRIES) {
                entries |= entry << (inlineCount * LicenseCodec.ENTRY_BITS);
                flagBits |= LicenseCodec.INLINE0 << inlineCount;
                ++inlineCount;
            } else {
                flagBits |= LicenseCodec.HAS_OVERFLOW;
                book.overflowPrices[twinId][terms.brand][index][usageType] = price | _OVERFLOW_PRESENT;
                book.overflowTypes[twinId][terms.brand][index] |= 1 << usageType;
            }
        }
        return LicenseCodec.encode(from, until, terms.maxUses, flagBits, entries);
    }

    function _decode(Book storage book, uint256 twinId, address brand, uint256 index, uint256 word)
        private
        view
        returns (ITwinLedgerTypes.License memory license)
    {
        uint256 mask = book.overflowTypes[twinId][brand][index];
        uint256 count = 0;
        for (uint256 i = 0; i < LicenseCodec.INLINE_ENTRIES; ++i) {
            if (word.has(LicenseCodec.INLINE0 << i)) ++count;
        }
        for (uint256 t = 0; t < 256; ++t) {
            if (mask & (1 << t) != 0) ++count;
        }
        ITwinLedgerTypes.UsagePrice[] memory prices = new ITwinLedgerTypes.UsagePrice[](count);
        uint256 n = 0;
        for (uint256 i = 0; i < LicenseCodec.INLINE_ENTRIES; ++i) {
            if (word.has(LicenseCodec.INLINE0 << i)) {
                (uint8 usageType, uint256 price) = word.entryAt(i);
                prices[n++] = ITwinLedgerTypes.UsagePrice(usageType, price);
            }
        }
        for (uint256 t = 0; t < 256; ++t) {
            if (mask & (1 << t) != 0) {
                uint8 usageType = uint8(t);
                uint256 stored = book.overflowPrices[twinId][brand][index][usageType];
                prices[n++] = ITwinLedgerTypes.UsagePrice(usageType, stored & ~_OVERFLOW_PRESENT);
            }
        }
        license = ITwinLedgerTypes.License({
            validFrom: word.validFrom(),
            validUntil: word.validUntil(),
            maxUses: word.maxUses(),
            uses: word.uses(),
            revoked: word.has(LicenseCodec.REVOKED),
            prices: prices
        });
    }
}
