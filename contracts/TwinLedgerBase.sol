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

import {ITwinLedgerTypes} from "./interfaces/ITwinLedgerTypes.sol";
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

/// @title TwinLedgerBase
/// @notice What the ledger ({TwinLedger}) and its extension ({TwinLedgerExtension}) share: the storage
/// (one layout, since the extension runs in the ledger's storage through `delegatecall`), the deployment
/// settings and the internal functions both use.
/// @dev Both contracts are deployed with the same constructor arguments; the ledger checks the extension's
/// {_configHash} against its own when it is deployed.
abstract contract TwinLedgerBase is
    ITwinLedgerTypes,
    ERC721URIStorage,
    AccessManaged,
    EIP712,
    Nonces,
    Pausable,
    ReentrancyGuard
{
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using LicenseCodec for uint256;
    using LimitCodec for uint256;
    using UsageCodec for uint256;
    using Arrays for uint256[];
    using LicenseBook for LicenseBook.Book;
    using SpendingBook for SpendingBook.Book;
    using EscrowBook for EscrowBook.Book;

    struct PauseClock {
        uint40 pausedAt;
        uint40 pausedTotal;
    }

    /// @notice Role ids in the access manager (its ADMIN_ROLE is 0).
    uint64 public constant REGISTRAR_ROLE = 1;
    uint64 public constant ATTESTER_ROLE = 2;
    uint64 public constant PAUSER_ROLE = 3;
    /// @notice Resolves disputes (release, void, charge); behind the role delays like the others.
    uint64 public constant ARBITER_ROLE = 4;

    /// @notice The shortest escrow notice period: the oldest usage the bridge accepts (35 days) plus a
    /// day to settle it, so a brand cannot withdraw escrow owed for a use it reported.
    uint40 public constant MIN_NOTICE_PERIOD = 36 days;
    /// @notice An unlocked escrow withdrawal lapses if not carried out within this time.
    uint40 public constant CLAIM_WINDOW = 7 days;
    /// @notice The most nonces one {invalidateNonces} call may skip.
    uint256 public constant MAX_NONCE_JUMP = 256;

    uint256 public constant MAX_PRICES = LicenseBook.MAX_PRICES;
    uint256 public constant MAX_PAYEES = PayeeBook.MAX_PAYEES;
    uint256 public constant MAX_PRICE = LicenseBook.MAX_PRICE;
    uint256 public constant AUTO_REPAY_ENTRIES = EscrowBook.AUTO_REPAY_ENTRIES;

    IERC20 internal immutable _token;
    address internal immutable _manager;
    uint40 internal immutable _noticePeriod;
    uint32 internal immutable _spendingPeriod;
    uint32 internal immutable _raiseDelay;
    /// @dev Seconds royalties are held after settlement (0: accrued at once; see {HoldBook}).
    uint32 internal immutable _holdWindow;
    /// @dev The default limits' codes in their place in a limits word, with the CONFIGURED flag.
    uint256 internal immutable _defaultLimits;

    // Written by the ledger ({TwinLedger-pause}, {TwinLedger-mint}) and read by the extension too, which
    // runs in the ledger's storage: slither, seeing the extension alone, finds them never written.
    // slither-disable-next-line uninitialized-state
    PauseClock internal _pauseClock;

    uint256 internal _lastTwinId;
    uint256 internal _totalLiabilities;

    // slither-disable-next-line uninitialized-state
    mapping(uint256 twinId => bytes32) internal _consentHashes;
    mapping(uint256 twinId => TwinBook.TwinAccount) internal _twins;
    mapping(uint256 twinId => uint256[] intervals) internal _pauseHistory;
    mapping(uint256 twinId => Payee[]) internal _payees;

    LicenseBook.Book internal _licenses;

    EscrowBook.Book internal _escrow;
    SpendingBook.Book internal _spending;

    /// @dev Key `address(0)`: ids attested by the bridge's attesters; a brand's own key: its own ids.
    mapping(address idSpace => mapping(uint256 wordIndex => uint256 bitmap)) internal _processed;
    mapping(address payee => uint256) internal _claimable;

    /// @dev Each twin's held royalties and open-dispute count ({HoldBook}); only with a hold window.
    mapping(uint256 twinId => uint256 word) internal _held;
    /// @dev Each settled group's record ({HoldBook-record}) by {HoldBook-groupKey}; only with a hold window.
    /// Written by the ledger's settlement, read by the extension's voids and disputes (see above).
    // slither-disable-next-line uninitialized-state
    mapping(bytes32 groupKey => uint256 record) internal _groups;
    /// @dev One bit per voided usage, by its index in the group.
    mapping(bytes32 groupKey => mapping(uint256 wordIndex => uint256 bitmap)) internal _voided;
    mapping(uint256 id => Dispute) internal _disputes;
    uint256 internal _lastDisputeId;

    /// @param token the ERC-20 all escrow and royalties are paid in
    /// @param manager the {AccessManager} holding the registrar, attester and pauser roles (for good)
    /// @param settings notice period, spending period, raise delay and default spending limits
    constructor(IERC20 token, address manager, Config memory settings)
        ERC721("Twin Bridge Twin", "TWIN")
        EIP712("TwinLedger", "2")
        AccessManaged(manager)
    {
        if (settings.noticePeriod < MIN_NOTICE_PERIOD || settings.spendingPeriod == 0 || manager == address(0)) {
            revert LedgerConfigInvalid();
        }
        if (settings.defaultPerUsage == 0 || settings.defaultPerUsage > settings.defaultPerPeriod) {
            revert SpendingLimitsInvalid(settings.defaultPerUsage, settings.defaultPerPeriod);
        }
        _token = token;
        _manager = manager;
        _noticePeriod = settings.noticePeriod;
        _spendingPeriod = settings.spendingPeriod;
        _raiseDelay = settings.raiseDelay;
        _holdWindow = settings.holdWindow;
        _defaultLimits = LimitCodec.CONFIGURED
            | LimitCodec.codes(LimitCodec.encode(settings.defaultPerUsage), LimitCodec.encode(settings.defaultPerPeriod));
    }

    // ================================================================== shared

    /// @notice The access manager, fixed at deployment.
    function authority() public view override returns (address) {
        return _manager;
    }

    /// @notice Refused: the ledger's access manager cannot be replaced, so no admin can move its roles
    /// to a manager without delays.
    function setAuthority(address) public pure override {
        revert LedgerAuthorityFixed();
    }

    /// @notice The metadata URI of the twin.
    function tokenURI(uint256 tokenId) public view override(ERC721URIStorage) returns (string memory) {
        return super.tokenURI(tokenId);
    }

    function supportsInterface(bytes4 interfaceId) public view override(ERC721URIStorage) returns (bool) {
        return super.supportsInterface(interfaceId);
    }

    /// @dev The hash of the deployment settings this code holds (token, manager and {Config}).
    function _configHash() internal view returns (bytes32) {
        return keccak256(
            abi.encode(_token, _manager, _noticePeriod, _spendingPeriod, _raiseDelay, _defaultLimits, _holdWindow)
        );
    }

    /// @dev Checks that `owner` owns the twin, then its signature.
    function _useOwnerSignature(
        address owner,
        uint256 twinId,
        bytes32 structHash,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) internal {
        address current = _requireOwned(twinId);
        if (owner != current) revert TwinInvalidSigner(current);
        _useSignature(owner, structHash, nonce, deadline, signature);
    }

    /// @dev Checks deadline, nonce and `signer`'s signature (ECDSA or ERC-1271) of the struct.
    function _useSignature(address signer, bytes32 structHash, uint256 nonce, uint256 deadline, bytes calldata signature)
        internal
    {
        // slither-disable-next-line timestamp
        if (block.timestamp > deadline) revert TwinSignatureExpired(deadline);
        _useCheckedNonce(signer, nonce);
        bytes32 digest = _hashTypedDataV4(structHash);
        if (!SignatureChecker.isValidSignatureNow(signer, digest, signature)) revert TwinInvalidSigner(signer);
        emit SignedActionUsed(signer, nonce, digest);
    }

    function _pausedSeconds() internal view returns (uint256) {
        PauseClock memory clock = _pauseClock;
        return clock.pausedTotal + (paused() ? block.timestamp - clock.pausedAt : 0);
    }

    function _setTwinPaused(uint256 twinId, bool paused_) internal {
        TwinBook.setPaused(_twins, _pauseHistory, twinId, paused_);
    }

    function _setPayees(uint256 twinId, Payee[] calldata payees) internal {
        _distribute(twinId);
        PayeeBook.set(_payees, twinId, payees);
    }

    function _distribute(uint256 twinId) internal {
        if (_holdWindow != 0) _rollHeld(twinId);
        TwinBook.TwinAccount storage twin = _twins[twinId];
        uint256 amount = twin.accrued;
        if (amount == 0) return;
        twin.accrued = 0;
        uint256 rest = amount;
        Payee[] storage payees = _payees[twinId];
        uint256 count = payees.length;
        for (uint256 i = 0; i < count; ++i) {
            Payee storage payee = payees[i];
            uint256 share = BipsLibrary.share(amount, payee.bps);
            if (share == 0) continue;
            rest -= share;
            _claimable[payee.account] += share;
            emit RoyaltiesDistributed(twinId, payee.account, share);
        }
        if (rest > 0) {
            address owner = _ownerOf(twinId);
            _claimable[owner] += rest;
            emit RoyaltiesDistributed(twinId, owner, rest);
        }
    }

    /// @dev Brings the twin's held word to now, crediting what matured to its accrued royalties; returns
    /// the word as stored.
    function _rollHeld(uint256 twinId) internal returns (uint256 word) {
        uint256 stored = _held[twinId];
        uint256 matured;
        (word, matured) = HoldBook.roll(stored, block.timestamp, _holdWindow);
        if (matured != 0) {
            TwinBook.TwinAccount storage twin = _twins[twinId];
            twin.accrued = SafeCast.toUint128(uint256(twin.accrued) + matured);
        }
        if (word != stored) _held[twinId] = word;
    }

    /// @dev Royalties the twin accrued while the previous owner held it are theirs: they are distributed
    /// before the transfer. Royalties settled after the transfer are the new owner's, also for uses made
    /// before it: the twin's licenses and the income still to be settled under them travel with the token.
    /// So do royalties still held (a brand may still void them, a dispute still freeze them): they are
    /// the owner's at the distribution after they mature.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address) {
        if (_ownerOf(tokenId) != address(0)) _distribute(tokenId);
        return super._update(to, tokenId, auth);
    }
}
