// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
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
import {LicenseBook} from "./libraries/LicenseBook.sol";
import {LicenseCodec} from "./libraries/LicenseCodec.sol";
import {PayeeBook} from "./libraries/PayeeBook.sol";
import {UsageCodec} from "./libraries/UsageCodec.sol";

/// @title TwinLedger
/// @notice ERC-721 registry of digital twins, their licenses and the escrow-backed per-use royalties.
/// @dev One contract keeps the settlement hot path on as few storage slots as possible: one word per
/// license, one per twin (royalty account and pause state), one per brand (escrow and debt) and one
/// bitmap word per 256 usage ids. Royalties accrue on the twin and are split between payees and the
/// current owner when distributed (before any payee change or transfer, and on payout).
contract TwinLedger is
    ITwinLedger,
    ERC721URIStorage,
    AccessControlDefaultAdminRules,
    EIP712,
    Nonces,
    Pausable,
    ReentrancyGuard
{
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using LicenseCodec for uint256;
    using UsageCodec for uint256;
    using Arrays for uint256[];
    using LicenseBook for LicenseBook.Book;

    struct TwinAccount {
        uint128 accrued;
        uint40 pausedSince;
        uint40 lastPauseEnd;
    }

    struct Escrow {
        uint128 balance;
        uint128 debt;
    }

    struct BrandBook {
        uint128 debtReserve;
        uint64 debtHead;
        uint128 pendingWithdrawal;
        uint40 unlocksAt;
    }

    struct DebtEntry {
        uint64 twinId;
        uint192 amount;
    }

    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    bytes32 public constant ATTESTER_ROLE = keccak256("ATTESTER_ROLE");
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    uint256 public constant MAX_PRICES = LicenseBook.MAX_PRICES;
    uint256 public constant MAX_PAYEES = PayeeBook.MAX_PAYEES;
    uint256 public constant MAX_PRICE = LicenseBook.MAX_PRICE;
    uint256 public constant AUTO_REPAY_ENTRIES = 16;

    bytes32 private constant _GRANT_LICENSE_TYPEHASH = keccak256(
        "GrantLicense(uint256 twinId,LicenseTerms terms,uint256 nonce,uint256 deadline)"
        "LicenseTerms(address brand,uint40 validFrom,uint40 validUntil,uint32 maxUses,bytes32 purposeHash,"
        "bytes32 consentHash,UsagePrice[] prices)UsagePrice(uint8 usageType,uint256 price)"
    );
    bytes32 private constant _REVOKE_LICENSE_TYPEHASH =
        keccak256("RevokeLicense(uint256 twinId,address brand,uint256 nonce,uint256 deadline)");
    bytes32 private constant _SET_TWIN_PAUSED_TYPEHASH =
        keccak256("SetTwinPaused(uint256 twinId,bool paused,uint256 nonce,uint256 deadline)");
    bytes32 private constant _SET_PAYEES_TYPEHASH = keccak256(
        "SetPayees(uint256 twinId,Payee[] payees,uint256 nonce,uint256 deadline)Payee(address account,uint16 bps)"
    );
    bytes32 private constant _USAGE_GROUP_TYPEHASH = keccak256("UsageGroup(address brand,uint256[] usages)");
    bytes32 private constant _USAGE_BATCH_TYPEHASH = keccak256(
        "UsageBatch(uint256 deadline,UsageGroup[] groups)UsageGroup(address brand,uint256[] usages)"
    );

    uint256 private constant _NO_WORD = type(uint256).max;
    uint256 private constant _NO_PRICE = type(uint256).max;

    IERC20 private immutable _token;
    uint40 private immutable _noticePeriod;

    uint256 private _lastTwinId;
    uint256 private _totalLiabilities;

    mapping(uint256 twinId => bytes32) private _consentHashes;
    mapping(uint256 twinId => TwinAccount) private _twins;
    mapping(uint256 twinId => uint256[] intervals) private _pauseHistory;
    mapping(uint256 twinId => Payee[]) private _payees;

    LicenseBook.Book private _licenses;

    mapping(address brand => Escrow) private _escrows;
    mapping(address brand => BrandBook) private _books;
    // slither-disable-next-line uninitialized-state (entries are pushed through a storage pointer)
    mapping(address brand => DebtEntry[]) private _debts;

    mapping(uint256 wordIndex => uint256 bitmap) private _processed;
    mapping(address payee => uint256) private _claimable;

    /// @param token the ERC-20 all escrow and royalties are paid in
    /// @param admin the default admin (transfer of the role takes `adminDelay` seconds)
    /// @param adminDelay seconds a default-admin transfer waits before it can be accepted
    /// @param noticePeriod seconds between an escrow withdrawal request and its unlock
    constructor(IERC20 token, address admin, uint48 adminDelay, uint40 noticePeriod)
        ERC721("Twin Bridge Twin", "TWIN")
        EIP712("TwinLedger", "1")
        AccessControlDefaultAdminRules(adminDelay, admin)
    {
        _token = token;
        _noticePeriod = noticePeriod;
    }

    // ================================================================== twins

    /// @inheritdoc ITwinLedger
    function mint(address owner, string calldata uri, bytes32 consentHash)
        external
        onlyRole(REGISTRAR_ROLE)
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
    function grantLicense(uint256 twinId, LicenseTerms calldata terms) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _licenses.grant(twinId, terms);
    }

    /// @inheritdoc ITwinLedger
    function grantLicenseBySig(
        uint256 twinId,
        LicenseTerms calldata terms,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash =
            keccak256(abi.encode(_GRANT_LICENSE_TYPEHASH, twinId, LicenseBook.hashTerms(terms), nonce, deadline));
        _useOwnerSignature(twinId, structHash, nonce, deadline, signature);
        _licenses.grant(twinId, terms);
    }

    /// @inheritdoc ITwinLedger
    function revokeLicense(uint256 twinId, address brand) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _licenses.revoke(twinId, brand);
    }

    /// @inheritdoc ITwinLedger
    function revokeLicenseBySig(
        uint256 twinId,
        address brand,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(abi.encode(_REVOKE_LICENSE_TYPEHASH, twinId, brand, nonce, deadline));
        _useOwnerSignature(twinId, structHash, nonce, deadline, signature);
        _licenses.revoke(twinId, brand);
    }

    /// @inheritdoc ITwinLedger
    function setTwinPaused(uint256 twinId, bool paused_) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _setTwinPaused(twinId, paused_);
    }

    /// @inheritdoc ITwinLedger
    function setTwinPausedBySig(
        uint256 twinId,
        bool paused_,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(abi.encode(_SET_TWIN_PAUSED_TYPEHASH, twinId, paused_, nonce, deadline));
        _useOwnerSignature(twinId, structHash, nonce, deadline, signature);
        _setTwinPaused(twinId, paused_);
    }

    /// @inheritdoc ITwinLedger
    function setPayees(uint256 twinId, Payee[] calldata payees) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _setPayees(twinId, payees);
    }

    /// @inheritdoc ITwinLedger
    function setPayeesBySig(
        uint256 twinId,
        Payee[] calldata payees,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash =
            keccak256(abi.encode(_SET_PAYEES_TYPEHASH, twinId, PayeeBook.hash(payees), nonce, deadline));
        _useOwnerSignature(twinId, structHash, nonce, deadline, signature);
        _setPayees(twinId, payees);
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
        _repayDebt(brand, maxEntries);
    }

    /// @inheritdoc ITwinLedger
    function requestEscrowWithdrawal(uint256 amount) external {
        if (amount == 0) revert EscrowZeroAmount();
        address brand = _msgSender();
        BrandBook storage book = _books[brand];
        uint40 unlocksAt = uint40(block.timestamp) + _noticePeriod;
        book.pendingWithdrawal = amount.toUint128();
        book.unlocksAt = unlocksAt;
        emit EscrowWithdrawalRequested(brand, amount, unlocksAt);
    }

    /// @inheritdoc ITwinLedger
    function cancelEscrowWithdrawal() external {
        address brand = _msgSender();
        BrandBook storage book = _books[brand];
        if (book.pendingWithdrawal == 0) revert EscrowNoPendingWithdrawal(brand);
        book.pendingWithdrawal = 0;
        book.unlocksAt = 0;
        emit EscrowWithdrawalCancelled(brand);
    }

    /// @inheritdoc ITwinLedger
    function withdrawEscrow() external nonReentrant {
        address brand = _msgSender();
        BrandBook storage book = _books[brand];
        uint256 pending = book.pendingWithdrawal;
        if (pending == 0) revert EscrowNoPendingWithdrawal(brand);
        if (block.timestamp < book.unlocksAt) revert EscrowWithdrawalLocked(brand, book.unlocksAt);
        Escrow storage escrow = _escrows[brand];
        uint256 amount = Math.min(pending, escrow.balance);
        book.pendingWithdrawal = 0;
        book.unlocksAt = 0;
        escrow.balance -= uint128(amount);
        _totalLiabilities -= amount;
        emit EscrowWithdrawn(brand, amount);
        _token.safeTransfer(brand, amount);
    }

    // ================================================================== settlement

    /// @inheritdoc ITwinLedger
    function settle(UsageBatch calldata batch, bytes calldata signature) external whenNotPaused nonReentrant {
        // slither-disable-next-line timestamp
        if (block.timestamp > batch.deadline) revert SettlementExpired(batch.deadline);
        uint256 groupCount = batch.groups.length;
        if (groupCount == 0) revert SettlementEmptyBatch();
        bytes32 digest = _hashUsageBatch(batch);
        // The third value only details a malformed signature, which is refused either way.
        // slither-disable-next-line unused-return
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || !hasRole(ATTESTER_ROLE, signer)) {
            revert SettlementInvalidAttester(signer);
        }
        for (uint256 g = 0; g < groupCount; ++g) {
            _settleGroup(digest, signer, batch.groups[g]);
        }
    }

    /// @inheritdoc ITwinLedger
    function isUsageProcessed(uint64 usageId) external view returns (bool) {
        return _processed[usageId >> 8] & (1 << (usageId & 0xff)) != 0;
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
    function rotateAttester(address oldAttester, address newAttester) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (!hasRole(ATTESTER_ROLE, oldAttester) || newAttester == address(0) || hasRole(ATTESTER_ROLE, newAttester))
        {
            revert AttesterRotationInvalid(oldAttester, newAttester);
        }
        _grantRole(ATTESTER_ROLE, newAttester);
        _revokeRole(ATTESTER_ROLE, oldAttester);
    }

    /// @inheritdoc ITwinLedger
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @inheritdoc ITwinLedger
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // ================================================================== views

    /// @inheritdoc ITwinLedger
    function paymentToken() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc ITwinLedger
    function escrowNoticePeriod() external view returns (uint40) {
        return _noticePeriod;
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
        TwinAccount storage twin = _twins[twinId];
        return (twin.accrued, twin.pausedSince, _pauseHistory[twinId].length);
    }

    /// @inheritdoc ITwinLedger
    function isPausedAt(uint256 twinId, uint40 at) external view returns (bool) {
        TwinAccount storage twin = _twins[twinId];
        return _isPausedAt(twinId, twin.pausedSince, twin.lastPauseEnd, at);
    }

    /// @inheritdoc ITwinLedger
    function payeesOf(uint256 twinId) external view returns (Payee[] memory) {
        return _payees[twinId];
    }

    /// @inheritdoc ITwinLedger
    function brandAccount(address brand) external view returns (BrandAccount memory) {
        Escrow storage escrow = _escrows[brand];
        BrandBook storage book = _books[brand];
        return BrandAccount({
            escrow: escrow.balance,
            debt: escrow.debt,
            debtReserve: book.debtReserve,
            pendingWithdrawal: book.pendingWithdrawal,
            withdrawalUnlocksAt: book.unlocksAt
        });
    }

    /// @inheritdoc ITwinLedger
    function debtEntry(address brand, uint256 entry) external view returns (uint256 twinId, uint256 amount) {
        DebtEntry storage debt = _debts[brand][entry];
        return (debt.twinId, debt.amount);
    }

    /// @inheritdoc ITwinLedger
    function debtQueue(address brand) external view returns (uint256 head, uint256 length) {
        return (_books[brand].debtHead, _debts[brand].length);
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

    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC721URIStorage, AccessControlDefaultAdminRules)
        returns (bool)
    {
        return super.supportsInterface(interfaceId);
    }

    // ================================================================== internal: owner actions

    /// @dev Checks deadline, nonce and the current owner's signature (ECDSA or ERC-1271).
    function _useOwnerSignature(
        uint256 twinId,
        bytes32 structHash,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) internal {
        // slither-disable-next-line timestamp
        if (block.timestamp > deadline) revert TwinSignatureExpired(deadline);
        address owner = _requireOwned(twinId);
        _useCheckedNonce(owner, nonce);
        bytes32 digest = _hashTypedDataV4(structHash);
        if (!SignatureChecker.isValidSignatureNow(owner, digest, signature)) revert TwinInvalidSigner(owner);
        emit SignedActionUsed(owner, nonce, digest);
    }

    function _setTwinPaused(uint256 twinId, bool paused_) internal {
        TwinAccount storage twin = _twins[twinId];
        uint40 now40 = uint40(block.timestamp);
        uint40 since = twin.pausedSince;
        if (paused_ == (since != 0)) revert TwinPauseUnchanged(twinId, paused_);
        if (paused_) {
            twin.pausedSince = now40;
            emit TwinPaused(twinId, now40);
        } else {
            _pauseHistory[twinId].push((uint256(since) << 40) | now40);
            twin.pausedSince = 0;
            twin.lastPauseEnd = now40;
            emit TwinUnpaused(twinId, now40);
        }
    }

    function _setPayees(uint256 twinId, Payee[] calldata payees) internal {
        _distribute(twinId);
        PayeeBook.set(_payees, twinId, payees);
    }

    // ================================================================== internal: money

    function _deposit(address brand, uint256 amount) internal {
        if (amount == 0) revert EscrowZeroAmount();
        if (brand == address(0)) revert EscrowInvalidBrand(brand);
        Escrow storage escrow = _escrows[brand];
        BrandBook storage book = _books[brand];
        uint256 owed = escrow.debt - book.debtReserve;
        uint256 toDebt = Math.min(amount, owed);
        book.debtReserve += uint128(toDebt);
        escrow.balance += (amount - toDebt).toUint128();
        _totalLiabilities += amount;
        emit EscrowDeposited(brand, _msgSender(), amount, toDebt);
        if (toDebt > 0) _repayDebt(brand, AUTO_REPAY_ENTRIES);
        _token.safeTransferFrom(_msgSender(), address(this), amount);
    }

    /// @dev Pays debt entries in order from the brand's reserve, crediting the twins owed.
    function _repayDebt(address brand, uint256 maxEntries) internal {
        BrandBook storage book = _books[brand];
        Escrow storage escrow = _escrows[brand];
        DebtEntry[] storage entries = _debts[brand];
        uint256 reserve = book.debtReserve;
        uint256 head = book.debtHead;
        uint256 length = entries.length;
        uint256 paid = 0;
        for (uint256 n = 0; n < maxEntries && reserve > 0 && head < length; ++n) {
            DebtEntry storage entry = entries[head];
            uint256 amount = Math.min(entry.amount, reserve);
            uint256 twinId = entry.twinId;
            entry.amount -= uint192(amount);
            reserve -= amount;
            paid += amount;
            _twins[twinId].accrued += uint128(amount);
            emit DebtRepaid(brand, twinId, amount, head);
            if (entry.amount == 0) ++head;
        }
        book.debtReserve = uint128(reserve);
        book.debtHead = uint64(head);
        escrow.debt -= uint128(paid);
    }

    function _recordDebt(address brand, uint256 twinId, uint256 amount) internal {
        DebtEntry[] storage entries = _debts[brand];
        uint256 length = entries.length;
        if (length > _books[brand].debtHead && entries[length - 1].twinId == twinId) {
            entries[length - 1].amount += amount.toUint192();
            emit DebtRecorded(brand, twinId, amount, length - 1);
        } else {
            entries.push(DebtEntry({twinId: uint64(twinId), amount: amount.toUint192()}));
            emit DebtRecorded(brand, twinId, amount, length);
        }
    }

    function _distribute(uint256 twinId) internal {
        TwinAccount storage twin = _twins[twinId];
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

    /// @dev Royalties accrued while the previous owner held the twin are theirs: distribute before a transfer.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address) {
        if (_ownerOf(tokenId) != address(0)) _distribute(tokenId);
        return super._update(to, tokenId, auth);
    }

    // ================================================================== internal: settlement

    /// @dev Settles one brand's usages. The loop keeps the current twin's royalty word and license word
    /// in locals and writes them back when the twin changes (usages sorted by twin touch each once).
    /// The common case (current license version, inline price, no pause) is priced by {_fastPrice} on
    /// plain words; everything else goes through {_slowPrice}.
    function _settleGroup(bytes32 digest, address attester, UsageGroup calldata group) private {
        address brand = group.brand;
        if (brand == address(0)) revert SettlementInvalidBrand(brand);
        uint256[] calldata usages = group.usages;
        uint256 count = usages.length;
        uint256[] memory results = new uint256[](count);

        Escrow memory account = _escrows[brand];
        uint256 escrow = account.balance;
        uint256 debt = account.debt;
        uint256 paid = 0;
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
                if (bitmapWord != _NO_WORD) _processed[bitmapWord] = bitmap;
                bitmapWord = usageId >> 8;
                bitmap = _processed[bitmapWord];
            }
            if (bitmap & (1 << (usageId & 0xff)) != 0) revert UsageAlreadyProcessed(uint64(usageId));
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
            // Escrow pays what it can; a shortfall becomes debt owed to the twin. A free usage type is
            // still a paid usage (amount 0).
            unchecked {
                // price < 2**96 and quantity < 2**32
                uint256 amount = price * quantity;
                uint256 funded = amount < escrow ? amount : escrow;
                escrow -= funded;
                paid += amount;
                if (amount > funded) {
                    debt += amount - funded;
                    _recordDebt(brand, twinId, amount - funded);
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
        if (bitmapWord != _NO_WORD) _processed[bitmapWord] = bitmap;
        _escrows[brand] = Escrow({balance: uint128(escrow), debt: debt.toUint128()});
        emit UsagesSettled(digest, brand, attester, paid, results);
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
        TwinAccount storage twin = _twins[twinId];
        assembly ("memory-safe") {
            word := sload(twin.slot)
        }
    }

    function _storeTwin(uint256 twinId, uint256 word) private {
        // The accrued field must not have carried into pausedSince.
        if ((word >> 128) != (_loadTwin(twinId) >> 128)) revert SafeCast.SafeCastOverflowedUintDowncast(128, word);
        TwinAccount storage twin = _twins[twinId];
        assembly ("memory-safe") {
            sstore(twin.slot, word)
        }
    }

    /// @dev Every check in full: quantity, time, license versions, overflow prices, pause intervals.
    function _slowPrice(uint256 twinId, address brand, uint256 license, uint256 twin, uint256 usage)
        private
        view
        returns (Outcome result, uint256 price, uint256 word, uint256 historyIndex)
    {
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
        if (result == Outcome.NoLicense && _ownerOf(twinId) == address(0)) result = Outcome.UnknownTwin;
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
