// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AccessManaged} from "@openzeppelin/contracts/access/manager/AccessManaged.sol";
import {IAccessManager} from "@openzeppelin/contracts/access/manager/IAccessManager.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {Arrays} from "@openzeppelin/contracts/utils/Arrays.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";

import {ITwinLedger} from "./interfaces/ITwinLedger.sol";
import {ITwinLedgerActions} from "./interfaces/ITwinLedgerActions.sol";
import {BipsLibrary} from "./libraries/BipsLibrary.sol";
import {EscrowBook} from "./libraries/EscrowBook.sol";
import {HoldBook} from "./libraries/HoldBook.sol";
import {LicenseBook} from "./libraries/LicenseBook.sol";
import {LicenseCodec} from "./libraries/LicenseCodec.sol";
import {LimitCodec} from "./libraries/LimitCodec.sol";
import {PayeeBook} from "./libraries/PayeeBook.sol";
import {SpendingBook} from "./libraries/SpendingBook.sol";
import {TwinBook} from "./libraries/TwinBook.sol";
import {UsageCodec} from "./libraries/UsageCodec.sol";
import {TwinLedgerBase} from "./TwinLedgerBase.sol";

/// @title TwinLedger
/// @notice ERC-721 registry of digital twins, their licenses and the escrow-backed per-use royalties.
/// @dev One contract keeps the settlement hot path on as few storage slots as possible: one word per
/// license, one per twin (royalty account and pause state), two per brand (escrow and debt; spending
/// limits, the period's spend and flags) and one bitmap word per 256 usage ids of a brand. Royalties
/// accrue on the twin and are split between payees and the current owner when distributed (before any
/// payee change or transfer, and on payout). Roles live in an OpenZeppelin {AccessManager}: minting,
/// pausing and attesting are granted there, behind its grant and execution delays.
///
/// The owners' and brands' actions and the views of licenses, payees and debt ({ITwinLedgerActions})
/// live in {TwinLedgerExtension}, which the fallback reaches by `delegatecall` (its address fixed at
/// deployment): one address, one storage, under the code-size limit.
/// @custom:extension TwinLedgerExtension
contract TwinLedger is TwinLedgerBase, ITwinLedger {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using LicenseCodec for uint256;
    using LimitCodec for uint256;
    using UsageCodec for uint256;
    using Arrays for uint256[];
    using LicenseBook for LicenseBook.Book;
    using SpendingBook for SpendingBook.Book;
    using EscrowBook for EscrowBook.Book;

    bytes32 private constant _USAGE_GROUP_TYPEHASH = keccak256("UsageGroup(address brand,uint256[] usages)");
    bytes32 private constant _USAGE_BATCH_TYPEHASH = keccak256(
        "UsageBatch(uint256 deadline,UsageGroup[] groups)UsageGroup(address brand,uint256[] usages)"
    );

    uint256 private constant _NO_WORD = type(uint256).max;
    uint256 private constant _NO_PRICE = type(uint256).max;
    uint256 private constant _LOW_BITS = (1 << UsageCodec.USAGE_TYPE_SHIFT) - 1;

    /// @dev The extension's code, fixed at deployment (its settings are checked to be the ledger's).
    address private immutable _extension;

    /// @param token the ERC-20 all escrow and royalties are paid in
    /// @param manager the {AccessManager} holding the registrar, attester and pauser roles (for good)
    /// @param settings notice period, spending period, raise delay and default spending limits
    /// @param extension_ the {TwinLedgerExtension} deployed with the same token, manager and settings
    constructor(IERC20 token, address manager, Config memory settings, address extension_)
        TwinLedgerBase(token, manager, settings)
    {
        if (extension_.code.length == 0 || ITwinLedgerActions(extension_).configHash() != _configHash()) {
            revert LedgerExtensionMismatch(extension_);
        }
        _extension = extension_;
    }

    /// @notice Every call this contract does not serve itself runs the extension's code in this
    /// contract's storage; its answer or revert is passed on as it is (OpenZeppelin's {Address}).
    fallback(bytes calldata data) external returns (bytes memory) {
        return Address.functionDelegateCall(_extension, data);
    }

    /// @notice The {TwinLedgerExtension} serving {ITwinLedgerActions} at this address.
    function extension() external view returns (address) {
        return _extension;
    }

    // ================================================================== twins

    /// @inheritdoc ITwinLedger
    function mint(address owner, string calldata uri, bytes32 consentHash)
        external
        restricted
        returns (uint256 twinId)
    {
        twinId = ++_lastTwinId;
        if (twinId > type(uint64).max) revert TwinIdOverflow(twinId);
        _consentHashes[twinId] = consentHash;
        _setTokenURI(twinId, uri);
        emit TwinMinted(twinId, owner, uri, consentHash);
        _safeMint(owner, twinId);
    }

    // ================================================================== escrow

    /// @inheritdoc ITwinLedger
    function deposit(address brand, uint256 amount) external whenNotPaused nonReentrant {
        _deposit(brand, amount);
    }

    /// @inheritdoc ITwinLedger
    function depositWithPermit(address brand, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        whenNotPaused
        nonReentrant
    {
        // A permit front-run by someone else leaves the allowance in place: only fail if it is missing.
        try IERC20Permit(address(_token)).permit(_msgSender(), address(this), amount, deadline, v, r, s) {}
        catch {}
        _deposit(brand, amount);
    }

    /// @inheritdoc ITwinLedger
    function repayDebt(address brand, uint256 maxEntries) external nonReentrant {
        _escrow.repayDebt(_twins, brand, maxEntries);
    }

    /// @inheritdoc ITwinLedger
    function withdrawEscrow() external whenNotPaused nonReentrant {
        address brand = _msgSender();
        uint256 amount = _escrow.takeWithdrawal(brand, _pausedSeconds(), CLAIM_WINDOW);
        _totalLiabilities -= amount;
        _token.safeTransfer(brand, amount);
    }

    // ================================================================== settlement

    /// @inheritdoc ITwinLedger
    function settle(UsageBatch calldata batch, address attester, bytes calldata signature)
        external
        whenNotPaused
        nonReentrant
    {
        // slither-disable-next-line timestamp
        if (block.timestamp > batch.deadline) revert SettlementExpired(batch.deadline);
        uint256 groupCount = batch.groups.length;
        if (groupCount == 0) revert SettlementEmptyBatch();
        bytes32 digest = _hashUsageBatch(batch);
        // An EOA attester's signature recovers to it; anything else is asked as ERC-1271 (a Safe).
        // The third value only details a malformed signature, which is refused either way.
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (
            (err != ECDSA.RecoverError.NoError || recovered != attester)
                && !SignatureChecker.isValidERC1271SignatureNow(attester, digest, signature)
        ) revert SettlementInvalidAttester(attester);
        bool roleChecked = false;
        for (uint256 g = 0; g < groupCount; ++g) {
            UsageGroup calldata group = batch.groups[g];
            uint256 limits = _limitsOf(group.brand);
            if (limits & LimitCodec.OWN_ATTESTER != 0) {
                if (_spending.attesters[group.brand] != attester) revert SettlementWrongAttester(group.brand, attester);
            } else if (!roleChecked) {
                // Once per batch (roleChecked); the execution delay concerns calls through the manager.
                // slither-disable-next-line unused-return,calls-loop
                (bool isMember,) = IAccessManager(authority()).hasRole(ATTESTER_ROLE, attester);
                if (!isMember) revert SettlementInvalidAttester(attester);
                roleChecked = true;
            }
            (uint256 paid, uint256[] memory results, uint256[] memory splits) = _settleGroup(group, limits);
            if (_holdWindow != 0) _recordGroup(digest, group.brand, results, splits);
            emit UsagesSettled(digest, group.brand, attester, paid, results);
        }
    }

    /// @inheritdoc ITwinLedger
    function isUsageProcessed(address brand, uint64 usageId) external view returns (bool) {
        address idSpace = usageId >> 62 == 1 ? brand : address(0);
        return _processed[idSpace][usageId >> 8] & (1 << (usageId & 0xff)) != 0;
    }

    /// @inheritdoc ITwinLedger
    function hashUsageBatch(UsageBatch calldata batch) external view returns (bytes32) {
        return _hashUsageBatch(batch);
    }

    // ================================================================== payouts

    /// @inheritdoc ITwinLedger
    function distribute(uint256[] calldata twinIds) external {
        for (uint256 i = 0; i < twinIds.length; ++i) {
            _distribute(twinIds[i]);
        }
    }

    /// @inheritdoc ITwinLedger
    function withdraw(uint256[] calldata twinIds) external nonReentrant {
        _payout(_msgSender(), twinIds);
    }

    /// @inheritdoc ITwinLedger
    function payout(address payee, uint256[] calldata twinIds) external nonReentrant {
        _payout(payee, twinIds);
    }

    // ================================================================== admin

    /// @inheritdoc ITwinLedger
    function pause() external restricted {
        _pauseClock.pausedAt = uint40(block.timestamp);
        _pause();
    }

    /// @inheritdoc ITwinLedger
    function unpause() external restricted {
        PauseClock storage clock = _pauseClock;
        clock.pausedTotal += uint40(block.timestamp) - clock.pausedAt;
        clock.pausedAt = 0;
        _unpause();
    }

    // ================================================================== views

    /// @inheritdoc ITwinLedger
    function paymentToken() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc ITwinLedger
    function config() external view returns (Config memory) {
        return Config({
            noticePeriod: _noticePeriod,
            spendingPeriod: _spendingPeriod,
            raiseDelay: _raiseDelay,
            defaultPerUsage: _defaultLimits.perUsage(),
            defaultPerPeriod: _defaultLimits.perPeriod(),
            holdWindow: _holdWindow
        });
    }

    /// @inheritdoc ITwinLedger
    function pausedSeconds() external view returns (uint256) {
        return _pausedSeconds();
    }

    /// @inheritdoc ITwinLedger
    function priceAt(uint256 twinId, address brand, uint8 usageType, uint40 at)
        external
        view
        returns (Outcome outcome, uint256 price)
    {
        (outcome, price,,) = _lookup(twinId, brand, _licenses.current[twinId][brand], usageType, at);
    }

    /// @inheritdoc ITwinLedger
    function twinState(uint256 twinId)
        external
        view
        returns (uint256 accrued, uint40 pausedSince, uint256 pauseIntervals)
    {
        TwinBook.TwinAccount storage twin = _twins[twinId];
        return (twin.accrued, twin.pausedSince, _pauseHistory[twinId].length);
    }

    /// @inheritdoc ITwinLedger
    function isPausedAt(uint256 twinId, uint40 at) external view returns (bool) {
        TwinBook.TwinAccount storage twin = _twins[twinId];
        return _isPausedAt(twinId, twin.pausedSince, twin.lastPauseEnd, at);
    }

    /// @inheritdoc ITwinLedger
    function brandAccount(address brand) external view returns (BrandAccount memory) {
        return _escrow.accountOf(brand, _pausedSeconds(), CLAIM_WINDOW);
    }

    /// @inheritdoc ITwinLedger
    function brandLimits(address brand) external view returns (BrandLimits memory limits) {
        limits = _spending.limitsOf(brand, _defaultLimits, _spendingPeriod);
        limits.spentInPeriod = _spentNow(_escrow.escrows[brand]);
    }

    /// @inheritdoc ITwinLedger
    function claimable(address payee) external view returns (uint256) {
        return _claimable[payee];
    }

    /// @inheritdoc ITwinLedger
    function totalLiabilities() external view returns (uint256) {
        return _totalLiabilities;
    }

    // ================================================================== internal: money


    function _deposit(address brand, uint256 amount) internal {
        address from = _msgSender();
        _escrow.deposit(_twins, brand, from, amount);
        _totalLiabilities += amount;
        _token.safeTransferFrom(from, address(this), amount);
    }

    function _payout(address payee, uint256[] calldata twinIds) internal {
        for (uint256 i = 0; i < twinIds.length; ++i) {
            _distribute(twinIds[i]);
        }
        uint256 amount = _claimable[payee];
        if (amount == 0) revert PayoutNothingToPay(payee);
        _claimable[payee] = 0;
        _totalLiabilities -= amount;
        emit PayeePaid(payee, _msgSender(), amount);
        _token.safeTransfer(payee, amount);
    }

    // ================================================================== internal: settlement

    /// @dev Settles one brand's usages within its spending limits (`limits`, its word as in force). The loop keeps the current twin's royalty word and license word
    /// in locals and writes them back when the twin changes (usages sorted by twin touch each once).
    /// The common case (current license version, inline price, no pause) is priced by {_fastPrice} on
    /// plain words; everything else goes through {_slowPrice}. With a hold window it also returns each
    /// usage's split (see {ITwinLedgerTypes-UsageProof}) for the group's record; without, no splits.
    function _settleGroup(UsageGroup calldata group, uint256 limits)
        private
        returns (uint256 paid, uint256[] memory results, uint256[] memory splits)
    {
        address brand = group.brand;
        if (brand == address(0)) revert SettlementInvalidBrand(brand);
        uint256[] calldata usages = group.usages;
        uint256 count = usages.length;
        results = new uint256[](count);
        // Allocated right after `results` (the loop writes it through `results`, saving a stack slot).
        splits = new uint256[](_holdWindow == 0 ? 0 : count);
        // Usage ids of brands with their own attester lie in [2**62, 2**63) with a bitmap per brand; the
        // bridge's attesters' ids lie below 2**62 and share one bitmap (`address(0)`), so a brand's
        // attester can burn only its own ids. (Every id fits a signed 64-bit database column.)
        uint256 ownIds = (limits & LimitCodec.OWN_ATTESTER) != 0 ? 1 : 0;
        address idSpace = ownIds == 1 ? brand : address(0);
        EscrowBook.Escrow memory account = _escrow.escrows[brand];
        // The per-usage limit (high 128 bits) and what the period's limit leaves (low 128 bits) in one
        // word, to keep the loop's stack small.
        uint256 bounds = limits.perPeriod();
        {
            uint256 spentBefore = _spentNow(account);
            bounds = (limits.perUsage() << 128) | (spentBefore < bounds ? bounds - spentBefore : 0);
        }
        uint256 boundsBefore = bounds;
        uint256 escrow = account.balance;
        uint256 debt = 0; // new debt of this group
        uint256 bitmapWord = _NO_WORD;
        uint256 bitmap = 0;
        uint256 twinId = 0; // no twin has id 0
        uint256 twin = 0; // packed TwinAccount of `twinId`
        uint256 license = 0; // current license word of (`twinId`, brand)
        bool twinDirty = false;
        bool licenseDirty = false;

        for (uint256 i = 0; i < count;) {
            uint256 usage = usages[i];
            // Replay protection: one bit per usage id, one storage word per 256 ids.
            uint256 usageId = usage >> UsageCodec.USAGE_ID_SHIFT;
            if (usageId >> 8 != bitmapWord) {
                // The ids of one bitmap word share their two top bits.
                if (usageId >> 62 != ownIds) revert SettlementMalformedUsage(usage);
                if (bitmapWord != _NO_WORD) _processed[idSpace][bitmapWord] = bitmap;
                bitmapWord = usageId >> 8;
                bitmap = _processed[idSpace][bitmapWord];
            }
            if (bitmap & (1 << (usageId & 0xff)) != 0) revert UsageAlreadyProcessed(brand, uint64(usageId));
            bitmap |= 1 << (usageId & 0xff);

            if (usage.twinId() != twinId) {
                if (twinDirty) _storeTwin(twinId, twin);
                if (licenseDirty) _licenses.current[twinId][brand] = license;
                twinId = usage.twinId();
                twin = _loadTwin(twinId);
                license = _licenses.current[twinId][brand];
                twinDirty = false;
                licenseDirty = false;
            }

            uint256 price = _fastPrice(usage, license, twin);
            uint256 word = license;
            uint256 historyIndex = LicenseBook.NOT_IN_HISTORY;
            if (price == _NO_PRICE) {
                Outcome result;
                (result, price, word, historyIndex) = _slowPrice(twinId, brand, license, twin, usage);
                if (result != Outcome.Paid) {
                    results[i] = usage | uint256(result);
                    unchecked {
                        ++i;
                    }
                    continue;
                }
            }
            uint256 quantity = usage.quantity();
            // price < 2**96 and quantity < 2**32
            uint256 amount = price * quantity;
            // The brand's limits first, so that a usage they refuse does not count toward the cap.
            if (amount > uint128(bounds) || amount > bounds >> 128) {
                results[i] = usage | uint256(amount > bounds >> 128 ? Outcome.OverUsageLimit : Outcome.OverPeriodLimit);
                unchecked {
                    ++i;
                }
                continue;
            }
            uint256 cap = word.maxUses();
            if (cap != 0) {
                uint256 used = word.uses() + quantity;
                if (used > cap) {
                    results[i] = usage | uint256(Outcome.UseCapReached);
                    unchecked {
                        ++i;
                    }
                    continue;
                }
                // used <= cap < 2**32
                word = word.withUses(uint32(used));
                if (historyIndex == LicenseBook.NOT_IN_HISTORY) {
                    license = word;
                    licenseDirty = true;
                } else {
                    _licenses.history[twinId][brand][historyIndex] = word;
                }
            }
            unchecked {
                // amount <= the low half: no borrow from the per-usage limit
                bounds -= amount;
            }
            // Escrow pays what it can; a shortfall becomes debt owed to the twin. A free usage type is
            // still a paid usage (amount 0).
            unchecked {
                uint256 funded = amount < escrow ? amount : escrow;
                escrow -= funded;
                paid += amount;
                uint256 split = funded << HoldBook.FUNDED_SHIFT;
                if (amount > funded) {
                    debt += amount - funded;
                    // amount <= the per-usage limit < 2**88: funded and debt fit their 104 bits
                    split |= ((amount - funded) << HoldBook.DEBT_SHIFT)
                        | _escrow.recordDebt(brand, twinId, amount - funded);
                }
                if (_holdWindow != 0) {
                    // splits[i], which lies count + 1 words after results[i] (see above)
                    assembly ("memory-safe") {
                        mstore(add(results, shl(5, add(add(count, 2), i))), split)
                    }
                }
                // The accrued field holds funded amounts only (tokens the ledger holds); _storeTwin
                // refuses a carry out of its 128 bits.
                twin += funded;
                twinDirty = true;
                ++i;
            }
            // Paid (code 0): the result is the usage word itself
            results[i - 1] = usage;
        }
        if (twinDirty) _storeTwin(twinId, twin);
        if (licenseDirty) _licenses.current[twinId][brand] = license;
        if (bitmapWord != _NO_WORD) _processed[idSpace][bitmapWord] = bitmap;
        // spent <= the period limit < 2**88 (see {LimitCodec})
        _escrow.escrows[brand] = EscrowBook.Escrow({
            balance: uint128(escrow),
            spent: uint88(_spentNow(account) + boundsBefore - bounds),
            periodIndex: uint32(block.timestamp / _spendingPeriod),
            custom: account.custom
        });
        if (debt != 0) _escrow.accounts[brand].debt += debt.toUint128();
    }

    /// @dev What the brand's usages cost in the current spending period so far.
    function _spentNow(EscrowBook.Escrow memory account) private view returns (uint256) {
        // The spend counts in the period it was recorded in: an index compared by equality.
        // slither-disable-next-line incorrect-equality,timestamp
        return account.periodIndex == block.timestamp / _spendingPeriod ? account.spent : 0;
    }

    /// @dev The brand's limits word as in force: its own if it ever set limits or an attester, else the
    /// deployment's defaults (without reading its word).
    function _limitsOf(address brand) private view returns (uint256) {
        return _escrow.escrows[brand].custom ? _spending.current(brand, _defaultLimits) : _defaultLimits;
    }

    /// @dev Price of the usage in the common case, on plain words: quantity > 0, not in the future, the
    /// current license version covers the time and prices the type inline, and the twin is not paused
    /// then (nor was in any earlier pause). Returns `_NO_PRICE` when any of that does not hold, and
    /// {_slowPrice} decides. Layouts: {UsageCodec}, {LicenseCodec}, {TwinAccount} (accrued 128 bits,
    /// pausedSince and lastPauseEnd 40 bits each).
    function _fastPrice(uint256 usage, uint256 license, uint256 twin) private view returns (uint256 price) {
        price = _NO_PRICE;
        assembly ("memory-safe") {
            let at := and(shr(88, usage), 0xffffffffff)
            let pausedSince := and(shr(128, twin), 0xffffffffff)
            let refused := or(iszero(and(shr(56, usage), 0xffffffff)), gt(at, timestamp()))
            refused := or(refused, and(usage, 0xffffffffffff))
            refused := or(refused, lt(at, shr(224, license)))
            refused := or(refused, iszero(lt(at, and(shr(192, license), 0xffffffff))))
            refused := or(refused, lt(at, and(shr(168, twin), 0xffffffffff)))
            refused := or(refused, and(iszero(iszero(pausedSince)), iszero(lt(at, pausedSince))))
            if iszero(refused) {
                let kind := and(shr(48, usage), 0xff)
                let flags := shr(120, license)
                for { let k := 0 } lt(k, 3) { k := add(k, 1) } {
                    let entry := and(shr(mul(k, 40), license), 0xffffffffff)
                    if and(iszero(iszero(and(shr(k, flags), 8))), eq(shr(32, entry), kind)) {
                        // mantissa < 2**28 and exponent <= 15: below MAX_PRICE
                        price := mul(and(entry, 0xfffffff), exp(10, and(shr(28, entry), 0xf)))
                        break
                    }
                }
            }
        }
    }

    /// @dev The twin's {TwinAccount} as one word: accrued (low 128 bits), pausedSince, lastPauseEnd.
    function _loadTwin(uint256 twinId) private view returns (uint256 word) {
        TwinBook.TwinAccount storage twin = _twins[twinId];
        assembly ("memory-safe") {
            word := sload(twin.slot)
        }
    }

    function _storeTwin(uint256 twinId, uint256 word) private {
        uint256 stored = _loadTwin(twinId);
        // The accrued field must not have carried into pausedSince.
        if ((word >> 128) != (stored >> 128)) revert SafeCast.SafeCastOverflowedUintDowncast(128, word);
        if (_holdWindow != 0) word = _holdFunded(twinId, word, stored);
        TwinBook.TwinAccount storage twin = _twins[twinId];
        assembly ("memory-safe") {
            sstore(twin.slot, word)
        }
    }

    /// @dev With a hold window: what the group funded the twin (`word`'s accrued minus `stored`'s) goes to
    /// its held word instead, after the held word's matured funds moved to accrued. Returns the twin word
    /// to store. Once per twin and group.
    function _holdFunded(uint256 twinId, uint256 word, uint256 stored) private returns (uint256) {
        (uint256 held, uint256 matured) = HoldBook.roll(_held[twinId], block.timestamp, _holdWindow);
        // word's accrued >= stored's (funded amounts only add), both below 2**128
        _held[twinId] = HoldBook.add(held, uint128(word) - uint128(stored));
        word = stored + matured;
        if ((word >> 128) != (stored >> 128)) revert SafeCast.SafeCastOverflowedUintDowncast(128, word);
        return word;
    }

    /// @dev Records the group (results and splits committed, settlement time) for voids and disputes.
    function _recordGroup(bytes32 digest, address brand, uint256[] memory results, uint256[] memory splits) private {
        bytes32 key = HoldBook.groupKey(digest, brand);
        if (_groups[key] != 0) revert SettlementDuplicateGroup(digest, brand);
        // Two uint256[] of equal length (one split per result): packed, they cannot collide.
        // slither-disable-next-line encode-packed-collision
        _groups[key] = HoldBook.record(keccak256(abi.encodePacked(results, splits)), block.timestamp);
    }

    /// @dev Every check in full: the word's low bits, quantity, time, license versions, overflow prices, pause intervals.
    function _slowPrice(uint256 twinId, address brand, uint256 license, uint256 twin, uint256 usage)
        private
        view
        returns (Outcome result, uint256 price, uint256 word, uint256 historyIndex)
    {
        if (usage & _LOW_BITS != 0) revert SettlementMalformedUsage(usage);
        uint40 at = usage.usedAt();
        if (usage.quantity() == 0) return (Outcome.ZeroQuantity, 0, 0, 0);
        // slither-disable-next-line timestamp
        if (at > block.timestamp) return (Outcome.UsageInFuture, 0, 0, 0);
        (result, price, word, historyIndex) = _lookup(twinId, brand, license, usage.usageType(), at);
        if (result == Outcome.Paid && _isPausedAt(twinId, uint40(twin >> 128), uint40(twin >> 168), at)) {
            result = Outcome.TwinPaused;
        }
    }

    /// @dev {LicenseBook-lookup}, telling an unknown twin from a missing license.
    function _lookup(uint256 twinId, address brand, uint256 current, uint8 usageType, uint40 at)
        private
        view
        returns (Outcome result, uint256 price, uint256 word, uint256 historyIndex)
    {
        (result, price, word, historyIndex) = _licenses.lookup(twinId, brand, current, usageType, at);
        if (result == Outcome.NoLicense) {
            if (_ownerOf(twinId) == address(0)) result = Outcome.UnknownTwin;
            else if (_licenses.hasOffer(twinId, brand)) result = Outcome.OfferNotAccepted;
        }
    }

    function _isPausedAt(uint256 twinId, uint40 pausedSince, uint40 lastPauseEnd, uint40 at)
        private
        view
        returns (bool)
    {
        // slither-disable-next-line timestamp
        return (pausedSince != 0 && at >= pausedSince) || (at < lastPauseEnd && _pausedBefore(twinId, at));
    }

    /// @dev Whether `at` falls into one of the twin's finished pause intervals.
    function _pausedBefore(uint256 twinId, uint40 at) private view returns (bool) {
        uint256[] storage intervals = _pauseHistory[twinId];
        uint256 index = intervals.upperBound((uint256(at) << 40) | type(uint40).max);
        return index > 0 && at < uint40(intervals[index - 1]);
    }

    // ================================================================== internal: hashing

    /// @dev `keccak256(abi.encodePacked(words))` without the per-element copy loop the compiler emits.
    function _hashWords(uint256[] calldata words) private pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            let size := shl(5, words.length)
            calldatacopy(ptr, words.offset, size)
            digest := keccak256(ptr, size)
        }
    }

    function _hashUsageBatch(UsageBatch calldata batch) private view returns (bytes32) {
        uint256 groupCount = batch.groups.length;
        bytes32[] memory hashes = new bytes32[](groupCount);
        for (uint256 g = 0; g < groupCount; ++g) {
            UsageGroup calldata group = batch.groups[g];
            hashes[g] = keccak256(abi.encode(_USAGE_GROUP_TYPEHASH, group.brand, _hashWords(group.usages)));
        }
        return _hashTypedDataV4(
            keccak256(abi.encode(_USAGE_BATCH_TYPEHASH, batch.deadline, keccak256(abi.encodePacked(hashes))))
        );
    }
}

