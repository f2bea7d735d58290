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

import {ITwinLedger} from "./interfaces/ITwinLedger.sol";
import {BipsLibrary} from "./libraries/BipsLibrary.sol";
import {EscrowBook} from "./libraries/EscrowBook.sol";
import {LicenseBook} from "./libraries/LicenseBook.sol";
import {LicenseCodec} from "./libraries/LicenseCodec.sol";
import {LimitCodec} from "./libraries/LimitCodec.sol";
import {PayeeBook} from "./libraries/PayeeBook.sol";
import {SpendingBook} from "./libraries/SpendingBook.sol";
import {TwinBook} from "./libraries/TwinBook.sol";
import {UsageCodec} from "./libraries/UsageCodec.sol";

/// @title TwinLedger
/// @notice ERC-721 registry of digital twins, their licenses and the escrow-backed per-use royalties.
/// @dev One contract keeps the settlement hot path on as few storage slots as possible: one word per
/// license, one per twin (royalty account and pause state), two per brand (escrow and debt; spending
/// limits, the period's spend and flags) and one bitmap word per 256 usage ids of a brand. Royalties
/// accrue on the twin and are split between payees and the current owner when distributed (before any
/// payee change or transfer, and on payout). Roles live in an OpenZeppelin {AccessManager}: minting,
/// pausing and attesting are granted there, behind its grant and execution delays.
contract TwinLedger is
    ITwinLedger,
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

    struct DebtEntry {
        uint64 twinId;
        uint192 amount;
    }

    /// @notice Role ids in the access manager (its ADMIN_ROLE is 0).
    uint64 public constant REGISTRAR_ROLE = 1;
    uint64 public constant ATTESTER_ROLE = 2;
    uint64 public constant PAUSER_ROLE = 3;

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

    bytes32 private constant _OFFER_LICENSE_TYPEHASH = keccak256(
        "OfferLicense(address owner,uint256 twinId,LicenseTerms terms,uint256 nonce,uint256 deadline)"
        "LicenseTerms(address brand,uint40 validFrom,uint40 validUntil,uint32 maxUses,bytes32 purposeHash,"
        "bytes32 consentHash,UsagePrice[] prices)UsagePrice(uint8 usageType,uint256 price)"
    );
    bytes32 private constant _REVOKE_LICENSE_TYPEHASH = keccak256(
        "RevokeLicense(address owner,uint256 twinId,address brand,uint256 version,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant _SET_TWIN_PAUSED_TYPEHASH =
        keccak256("SetTwinPaused(address owner,uint256 twinId,bool paused,uint256 nonce,uint256 deadline)");
    bytes32 private constant _SET_PAYEES_TYPEHASH = keccak256(
        "SetPayees(address owner,uint256 twinId,Payee[] payees,uint256 nonce,uint256 deadline)"
        "Payee(address account,uint16 bps)"
    );
    bytes32 private constant _ACCEPT_LICENSE_TYPEHASH = keccak256(
        "AcceptLicense(address brand,uint256 twinId,uint256 version,bytes32 termsHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant _USAGE_GROUP_TYPEHASH = keccak256("UsageGroup(address brand,uint256[] usages)");
    bytes32 private constant _USAGE_BATCH_TYPEHASH = keccak256(
        "UsageBatch(uint256 deadline,UsageGroup[] groups)UsageGroup(address brand,uint256[] usages)"
    );

    uint256 private constant _NO_WORD = type(uint256).max;
    uint256 private constant _NO_PRICE = type(uint256).max;
    uint256 private constant _LOW_BITS = (1 << UsageCodec.USAGE_TYPE_SHIFT) - 1;

    IERC20 private immutable _token;
    address private immutable _manager;
    uint40 private immutable _noticePeriod;
    uint32 private immutable _spendingPeriod;
    uint32 private immutable _raiseDelay;
    /// @dev The default limits' codes in their place in a limits word, with the CONFIGURED flag.
    uint256 private immutable _defaultLimits;

    PauseClock private _pauseClock;

    uint256 private _lastTwinId;
    uint256 private _totalLiabilities;

    mapping(uint256 twinId => bytes32) private _consentHashes;
    mapping(uint256 twinId => TwinBook.TwinAccount) private _twins;
    mapping(uint256 twinId => uint256[] intervals) private _pauseHistory;
    mapping(uint256 twinId => Payee[]) private _payees;

    LicenseBook.Book private _licenses;

    EscrowBook.Book private _escrow;
    SpendingBook.Book private _spending;

    /// @dev Key `address(0)`: ids attested by the bridge's attesters; a brand's own key: its own ids.
    mapping(address idSpace => mapping(uint256 wordIndex => uint256 bitmap)) private _processed;
    mapping(address payee => uint256) private _claimable;

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
        _defaultLimits = LimitCodec.CONFIGURED
            | LimitCodec.codes(LimitCodec.encode(settings.defaultPerUsage), LimitCodec.encode(settings.defaultPerPeriod));
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

    /// @inheritdoc ITwinLedger
    function consentHashOf(uint256 twinId) external view returns (bytes32) {
        _requireOwned(twinId);
        return _consentHashes[twinId];
    }

    // ================================================================== owner actions

    /// @inheritdoc ITwinLedger
    function offerLicense(uint256 twinId, LicenseTerms calldata terms) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _licenses.offer(twinId, terms);
    }

    /// @inheritdoc ITwinLedger
    function offerLicenseBySig(
        address owner,
        uint256 twinId,
        LicenseTerms calldata terms,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(_OFFER_LICENSE_TYPEHASH, owner, twinId, LicenseBook.hashTerms(terms), nonce, deadline)
        );
        _useOwnerSignature(owner, twinId, structHash, nonce, deadline, signature);
        _licenses.offer(twinId, terms);
    }

    /// @inheritdoc ITwinLedger
    function revokeLicense(uint256 twinId, address brand, uint256 version) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _licenses.revoke(twinId, brand, version);
    }

    /// @inheritdoc ITwinLedger
    function revokeLicenseBySig(
        address owner,
        uint256 twinId,
        address brand,
        uint256 version,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash =
            keccak256(abi.encode(_REVOKE_LICENSE_TYPEHASH, owner, twinId, brand, version, nonce, deadline));
        _useOwnerSignature(owner, twinId, structHash, nonce, deadline, signature);
        _licenses.revoke(twinId, brand, version);
    }

    /// @inheritdoc ITwinLedger
    function setTwinPaused(uint256 twinId, bool paused_) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _setTwinPaused(twinId, paused_);
    }

    /// @inheritdoc ITwinLedger
    function setTwinPausedBySig(
        address owner,
        uint256 twinId,
        bool paused_,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash =
            keccak256(abi.encode(_SET_TWIN_PAUSED_TYPEHASH, owner, twinId, paused_, nonce, deadline));
        _useOwnerSignature(owner, twinId, structHash, nonce, deadline, signature);
        _setTwinPaused(twinId, paused_);
    }

    /// @inheritdoc ITwinLedger
    function setPayees(uint256 twinId, Payee[] calldata payees) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _setPayees(twinId, payees);
    }

    /// @inheritdoc ITwinLedger
    function setPayeesBySig(
        address owner,
        uint256 twinId,
        Payee[] calldata payees,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash =
            keccak256(abi.encode(_SET_PAYEES_TYPEHASH, owner, twinId, PayeeBook.hash(payees), nonce, deadline));
        _useOwnerSignature(owner, twinId, structHash, nonce, deadline, signature);
        _setPayees(twinId, payees);
    }

    /// @inheritdoc ITwinLedger
    function invalidateNonces(uint256 newNonce) external {
        address account = _msgSender();
        uint256 current = nonces(account);
        if (newNonce <= current || newNonce - current > MAX_NONCE_JUMP) revert NonceJumpInvalid(current, newNonce);
        for (uint256 n = current; n < newNonce; ++n) {
            _useNonce(account);
        }
        emit NoncesInvalidated(account, newNonce);
    }

    // ================================================================== brand actions

    /// @inheritdoc ITwinLedger
    function acceptLicense(uint256 twinId, uint256 version, bytes32 termsHash) external {
        _licenses.accept(twinId, _msgSender(), version, termsHash);
    }

    /// @inheritdoc ITwinLedger
    function acceptLicenseBySig(
        address brand,
        uint256 twinId,
        uint256 version,
        bytes32 termsHash,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash =
            keccak256(abi.encode(_ACCEPT_LICENSE_TYPEHASH, brand, twinId, version, termsHash, nonce, deadline));
        _useSignature(brand, structHash, nonce, deadline, signature);
        _licenses.accept(twinId, brand, version, termsHash);
    }

    /// @inheritdoc ITwinLedger
    function declineLicense(uint256 twinId, uint256 version) external {
        _licenses.decline(twinId, _msgSender(), version);
    }

    /// @inheritdoc ITwinLedger
    function setSpendingLimits(uint256 perUsage, uint256 perPeriod) external {
        _spending.setLimits(_msgSender(), perUsage, perPeriod, _defaultLimits, _raiseDelay);
        _escrow.escrows[_msgSender()].custom = true;
    }

    /// @inheritdoc ITwinLedger
    function setBrandAttester(address attester) external {
        _spending.setAttester(_msgSender(), attester, _defaultLimits);
        _escrow.escrows[_msgSender()].custom = true;
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
    function requestEscrowWithdrawal(uint256 amount) external {
        _escrow.requestWithdrawal(_msgSender(), amount, _noticePeriod, _pausedSeconds());
    }

    /// @inheritdoc ITwinLedger
    function cancelEscrowWithdrawal() external {
        _escrow.cancelWithdrawal(_msgSender());
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
            (uint256 paid, uint256[] memory results) = _settleGroup(group, limits);
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

    /// @notice The access manager, fixed at deployment.
    function authority() public view override returns (address) {
        return _manager;
    }

    /// @notice Refused: the ledger's access manager cannot be replaced, so no admin can move its roles
    /// to a manager without delays.
    function setAuthority(address) public pure override {
        revert LedgerAuthorityFixed();
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
            defaultPerPeriod: _defaultLimits.perPeriod()
        });
    }

    /// @inheritdoc ITwinLedger
    function pausedSeconds() external view returns (uint256) {
        return _pausedSeconds();
    }

    /// @inheritdoc ITwinLedger
    function licenseOf(uint256 twinId, address brand) external view returns (License memory license, uint256 version) {
        if (!_licenses.current[twinId][brand].has(LicenseCodec.EXISTS)) revert LicenseNotFound(twinId, brand);
        version = _licenses.history[twinId][brand].length;
        license = _licenses.versionAt(twinId, brand, version);
    }

    /// @inheritdoc ITwinLedger
    function licenseVersion(uint256 twinId, address brand, uint256 version) external view returns (License memory) {
        return _licenses.versionAt(twinId, brand, version);
    }

    /// @inheritdoc ITwinLedger
    function licenseVersionCount(uint256 twinId, address brand) external view returns (uint256) {
        if (!_licenses.current[twinId][brand].has(LicenseCodec.EXISTS)) return 0;
        return _licenses.history[twinId][brand].length + 1;
    }

    /// @inheritdoc ITwinLedger
    function offerOf(uint256 twinId, address brand)
        external
        view
        returns (License memory terms, uint256 version, bytes32 termsHash)
    {
        return _licenses.offerOf(twinId, brand);
    }

    /// @inheritdoc ITwinLedger
    function hashLicenseTerms(LicenseTerms calldata terms) external pure returns (bytes32) {
        return LicenseBook.hashTerms(terms);
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
    function payeesOf(uint256 twinId) external view returns (Payee[] memory) {
        return _payees[twinId];
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
    function debtEntry(address brand, uint256 entry) external view returns (uint256 twinId, uint256 amount) {
        EscrowBook.DebtEntry storage debt = _escrow.debts[brand][entry];
        return (debt.twinId, debt.amount);
    }

    /// @inheritdoc ITwinLedger
    function debtQueue(address brand) external view returns (uint256 head, uint256 length) {
        return (_escrow.accounts[brand].debtHead, _escrow.debts[brand].length);
    }

    /// @inheritdoc ITwinLedger
    function claimable(address payee) external view returns (uint256) {
        return _claimable[payee];
    }

    /// @inheritdoc ITwinLedger
    function totalLiabilities() external view returns (uint256) {
        return _totalLiabilities;
    }

    /// @notice The metadata URI of the twin.
    function tokenURI(uint256 tokenId) public view override(ERC721URIStorage) returns (string memory) {
        return super.tokenURI(tokenId);
    }

    function supportsInterface(bytes4 interfaceId) public view override(ERC721URIStorage) returns (bool) {
        return super.supportsInterface(interfaceId);
    }

    // ================================================================== internal: owner actions

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

    // ================================================================== internal: money

    function _deposit(address brand, uint256 amount) internal {
        address from = _msgSender();
        _escrow.deposit(_twins, brand, from, amount);
        _totalLiabilities += amount;
        _token.safeTransferFrom(from, address(this), amount);
    }

    function _distribute(uint256 twinId) internal {
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

    /// @dev Royalties the twin accrued while the previous owner held it are theirs: they are distributed
    /// before the transfer. Royalties settled after the transfer are the new owner's, also for uses made
    /// before it: the twin's licenses and the income still to be settled under them travel with the token.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address) {
        if (_ownerOf(tokenId) != address(0)) _distribute(tokenId);
        return super._update(to, tokenId, auth);
    }

    // ================================================================== internal: settlement

    /// @dev Settles one brand's usages within its spending limits (`limits`, its word as in force). The loop keeps the current twin's royalty word and license word
    /// in locals and writes them back when the twin changes (usages sorted by twin touch each once).
    /// The common case (current license version, inline price, no pause) is priced by {_fastPrice} on
    /// plain words; everything else goes through {_slowPrice}.
    function _settleGroup(UsageGroup calldata group, uint256 limits)
        private
        returns (uint256 paid, uint256[] memory results)
    {
        address brand = group.brand;
        if (brand == address(0)) revert SettlementInvalidBrand(brand);
        uint256[] calldata usages = group.usages;
        uint256 count = usages.length;
        results = new uint256[](count);
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
                if (amount > funded) {
                    debt += amount - funded;
                    _escrow.recordDebt(brand, twinId, amount - funded);
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
        // The accrued field must not have carried into pausedSince.
        if ((word >> 128) != (_loadTwin(twinId) >> 128)) revert SafeCast.SafeCastOverflowedUintDowncast(128, word);
        TwinBook.TwinAccount storage twin = _twins[twinId];
        assembly ("memory-safe") {
            sstore(twin.slot, word)
        }
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
