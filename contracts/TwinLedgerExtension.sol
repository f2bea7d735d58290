// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ITwinLedgerActions} from "./interfaces/ITwinLedgerActions.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {EscrowBook} from "./libraries/EscrowBook.sol";
import {HoldBook} from "./libraries/HoldBook.sol";
import {LicenseBook} from "./libraries/LicenseBook.sol";
import {LicenseCodec} from "./libraries/LicenseCodec.sol";
import {PayeeBook} from "./libraries/PayeeBook.sol";
import {SpendingBook} from "./libraries/SpendingBook.sol";
import {TwinBook} from "./libraries/TwinBook.sol";
import {TwinLedgerBase} from "./TwinLedgerBase.sol";

/// @title TwinLedgerExtension
/// @notice The owners' and brands' actions on the ledger (direct and signed), and its views of licenses,
/// payees and debt. Deployed once per ledger and reached only through the ledger's fallback, which
/// `delegatecall`s it: it runs in the ledger's storage, under the ledger's address, and its events are
/// the ledger's. Called directly, it acts on its own empty storage and holds no funds.
///
/// It also serves corrections and disputes, which exist only with a hold window: a brand voids a paid
/// usage of its own while the usage's royalties are held, a twin's owner disputes a brand, a group or a
/// usage (freezing the twin's held royalties), and the arbiter (ARBITER_ROLE) resolves the dispute.
contract TwinLedgerExtension is TwinLedgerBase, ITwinLedgerActions {
    using SafeCast for uint256;
    using LicenseCodec for uint256;
    using LicenseBook for LicenseBook.Book;
    using SpendingBook for SpendingBook.Book;
    using EscrowBook for EscrowBook.Book;

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
    bytes32 private constant _VOID_USAGE_TYPEHASH = keccak256(
        "VoidUsage(address brand,bytes32 batchDigest,uint256 usageId,uint8 reason,uint256 nonce,uint256 deadline)"
    );

    constructor(IERC20 token, address manager, Config memory settings) TwinLedgerBase(token, manager, settings) {}

    /// @inheritdoc ITwinLedgerActions
    function configHash() external view returns (bytes32) {
        return _configHash();
    }

    /// @inheritdoc ITwinLedgerActions
    function offerLicense(uint256 twinId, LicenseTerms calldata terms) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _licenses.offer(twinId, terms);
    }

    /// @inheritdoc ITwinLedgerActions
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

    /// @inheritdoc ITwinLedgerActions
    function revokeLicense(uint256 twinId, address brand, uint256 version) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _licenses.revoke(twinId, brand, version);
    }

    /// @inheritdoc ITwinLedgerActions
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

    /// @inheritdoc ITwinLedgerActions
    function setTwinPaused(uint256 twinId, bool paused_) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _setTwinPaused(twinId, paused_);
    }

    /// @inheritdoc ITwinLedgerActions
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

    /// @inheritdoc ITwinLedgerActions
    function setPayees(uint256 twinId, Payee[] calldata payees) external {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        _setPayees(twinId, payees);
    }

    /// @inheritdoc ITwinLedgerActions
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

    /// @inheritdoc ITwinLedgerActions
    function invalidateNonces(uint256 newNonce) external {
        address account = _msgSender();
        uint256 current = nonces(account);
        if (newNonce <= current || newNonce - current > MAX_NONCE_JUMP) revert NonceJumpInvalid(current, newNonce);
        for (uint256 n = current; n < newNonce; ++n) {
            _useNonce(account);
        }
        emit NoncesInvalidated(account, newNonce);
    }

    /// @inheritdoc ITwinLedgerActions
    function acceptLicense(uint256 twinId, uint256 version, bytes32 termsHash) external {
        _licenses.accept(twinId, _msgSender(), version, termsHash);
    }

    /// @inheritdoc ITwinLedgerActions
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

    /// @inheritdoc ITwinLedgerActions
    function declineLicense(uint256 twinId, uint256 version) external {
        _licenses.decline(twinId, _msgSender(), version);
    }

    /// @inheritdoc ITwinLedgerActions
    function setSpendingLimits(uint256 perUsage, uint256 perPeriod) external {
        _spending.setLimits(_msgSender(), perUsage, perPeriod, _defaultLimits, _raiseDelay);
        _escrow.escrows[_msgSender()].custom = true;
    }

    /// @inheritdoc ITwinLedgerActions
    function setBrandAttester(address attester) external {
        _spending.setAttester(_msgSender(), attester, _defaultLimits);
        _escrow.escrows[_msgSender()].custom = true;
    }

    /// @inheritdoc ITwinLedgerActions
    function requestEscrowWithdrawal(uint256 amount) external {
        _escrow.requestWithdrawal(_msgSender(), amount, _noticePeriod, _pausedSeconds());
    }

    /// @inheritdoc ITwinLedgerActions
    function cancelEscrowWithdrawal() external {
        _escrow.cancelWithdrawal(_msgSender());
    }

    // ================================================================== corrections and disputes

    /// @inheritdoc ITwinLedgerActions
    function voidUsage(UsageProof calldata proof, uint8 reason) external {
        if (proof.brand != _msgSender()) revert VoidUnauthorized(_msgSender(), proof.brand);
        _void(proof, reason, true);
    }

    /// @inheritdoc ITwinLedgerActions
    function voidUsageBySig(
        UsageProof calldata proof,
        uint8 reason,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        (,, uint256 usage,) = _prove(proof);
        bytes32 structHash = keccak256(
            abi.encode(_VOID_USAGE_TYPEHASH, proof.brand, proof.batchDigest, usage >> 192, reason, nonce, deadline)
        );
        _useSignature(proof.brand, structHash, nonce, deadline, signature);
        _void(proof, reason, true);
    }

    /// @inheritdoc ITwinLedgerActions
    function openDispute(uint256 twinId, DisputeKind kind, UsageProof calldata target, bytes32 reasonHash)
        external
        returns (uint256 id)
    {
        _checkAuthorized(_ownerOf(twinId), _msgSender(), twinId);
        if (_holdWindow == 0) revert HoldWindowDisabled();
        if (target.brand == address(0)) revert DisputeInvalidTarget(twinId, kind);
        Dispute memory dispute = Dispute({
            brand: target.brand,
            twinId: uint64(twinId),
            kind: kind,
            open: true,
            batchDigest: 0,
            usageId: 0,
            index: 0,
            openedAt: uint40(block.timestamp)
        });
        if (kind != DisputeKind.Brand) {
            (bytes32 key, uint256 settledAt, uint256 usage,) = _prove(target);
            _checkWindow(target, settledAt);
            if (uint64(usage >> 128) != twinId) revert DisputeInvalidTarget(twinId, kind);
            if (_isVoided(key, target.index)) revert UsageAlreadyVoided(target.batchDigest, target.brand, uint64(usage >> 192));
            dispute.batchDigest = target.batchDigest;
            dispute.index = target.index.toUint32();
            if (kind != DisputeKind.Group) dispute.usageId = uint64(usage >> 192);
        }
        uint256 held = _rollHeld(twinId);
        // A counter compared with its ceiling, not a balance or a time.
        // slither-disable-next-line incorrect-equality
        if (HoldBook.disputesOf(held) == HoldBook.MAX_DISPUTES) revert DisputeTooMany(twinId);
        _held[twinId] = HoldBook.countDispute(held, true);
        id = ++_lastDisputeId;
        _disputes[id] = dispute;
        emit DisputeOpened(id, twinId, target.brand, kind, dispute.batchDigest, dispute.usageId, reasonHash);
    }

    /// @inheritdoc ITwinLedgerActions
    function releaseDispute(uint256 id) external restricted {
        Dispute storage dispute = _openDispute(id);
        _closeDispute(dispute);
        emit DisputeReleased(id, dispute.twinId);
    }

    /// @inheritdoc ITwinLedgerActions
    function resolveDisputeByVoid(uint256 id, UsageProof calldata proof, uint8 reason) external restricted {
        Dispute storage dispute = _openDispute(id);
        DisputeKind kind = dispute.kind;
        if (
            kind == DisputeKind.Brand || proof.batchDigest != dispute.batchDigest || proof.brand != dispute.brand
                || (kind != DisputeKind.Group && proof.index != dispute.index)
        ) revert DisputeTargetMismatch(id);
        // The dispute froze the twin's held royalties within the window: the usage's are still held.
        (uint256 twinId, uint64 usageId) = _void(proof, reason, false);
        if (twinId != dispute.twinId) revert DisputeTargetMismatch(id);
        _closeDispute(dispute);
        emit DisputeVoided(id, twinId, usageId);
    }

    /// @inheritdoc ITwinLedgerActions
    function resolveDisputeByCharge(uint256 id, uint256 amount) external restricted {
        if (amount == 0) revert EscrowZeroAmount();
        Dispute storage dispute = _openDispute(id);
        address brand = dispute.brand;
        uint256 twinId = dispute.twinId;
        EscrowBook.Escrow storage escrow = _escrow.escrows[brand];
        uint256 balance = escrow.balance;
        uint256 funded = amount < balance ? amount : balance;
        escrow.balance = uint128(balance - funded);
        TwinBook.TwinAccount storage twin = _twins[twinId];
        twin.accrued = SafeCast.toUint128(uint256(twin.accrued) + funded);
        uint256 toDebt = amount - funded;
        if (toDebt != 0) {
            // The entry index matters only to a void, and a charge is never voided.
            // slither-disable-next-line unused-return
            _escrow.recordDebt(brand, twinId, toDebt);
            _escrow.accounts[brand].debt += toDebt.toUint128();
        }
        _closeDispute(dispute);
        emit DisputeCharged(id, twinId, brand, amount, toDebt);
    }

    /// @inheritdoc ITwinLedgerActions
    function heldRoyalties(uint256 twinId) external view returns (HeldRoyalties memory held) {
        if (_holdWindow == 0) return held;
        (uint256 word, uint256 matured) = HoldBook.roll(_held[twinId], block.timestamp, _holdWindow);
        uint256 disputes = HoldBook.disputesOf(word);
        uint256 index = HoldBook.indexOf(word);
        held.matured = matured;
        held.earlier = HoldBook.earlierOf(word);
        held.later = HoldBook.laterOf(word);
        held.openDisputes = disputes;
        // A counter, not a balance or a time.
        // slither-disable-next-line incorrect-equality
        if (disputes == 0) {
            // Funds of period k mature at (k + 2) * window; the earlier bucket is period index - 1.
            if (held.earlier != 0) held.earlierMaturesAt = uint40((index + 1) * _holdWindow);
            if (held.later != 0) held.laterMaturesAt = uint40((index + 2) * _holdWindow);
        }
    }

    /// @inheritdoc ITwinLedgerActions
    function groupRecord(bytes32 batchDigest, address brand)
        external
        view
        returns (bytes32 commitment, uint40 settledAt, uint40 voidableUntil)
    {
        uint256 record = _groups[HoldBook.groupKey(batchDigest, brand)];
        if (record == 0) return (0, 0, 0);
        settledAt = uint40(record);
        return (bytes32(record & ~HoldBook.TIME_MASK), settledAt, settledAt + _holdWindow);
    }

    /// @inheritdoc ITwinLedgerActions
    function isUsageVoided(bytes32 batchDigest, address brand, uint256 index) external view returns (bool) {
        return _isVoided(HoldBook.groupKey(batchDigest, brand), index);
    }

    /// @inheritdoc ITwinLedgerActions
    function disputeOf(uint256 id) external view returns (Dispute memory) {
        return _disputes[id];
    }

    /// @inheritdoc ITwinLedgerActions
    function consentHashOf(uint256 twinId) external view returns (bytes32) {
        _requireOwned(twinId);
        return _consentHashes[twinId];
    }

    /// @inheritdoc ITwinLedgerActions
    function licenseOf(uint256 twinId, address brand) external view returns (License memory license, uint256 version) {
        if (!_licenses.current[twinId][brand].has(LicenseCodec.EXISTS)) revert LicenseNotFound(twinId, brand);
        version = _licenses.history[twinId][brand].length;
        license = _licenses.versionAt(twinId, brand, version);
    }

    /// @inheritdoc ITwinLedgerActions
    function licenseVersion(uint256 twinId, address brand, uint256 version) external view returns (License memory) {
        return _licenses.versionAt(twinId, brand, version);
    }

    /// @inheritdoc ITwinLedgerActions
    function licenseVersionCount(uint256 twinId, address brand) external view returns (uint256) {
        if (!_licenses.current[twinId][brand].has(LicenseCodec.EXISTS)) return 0;
        return _licenses.history[twinId][brand].length + 1;
    }

    /// @inheritdoc ITwinLedgerActions
    function offerOf(uint256 twinId, address brand)
        external
        view
        returns (License memory terms, uint256 version, bytes32 termsHash)
    {
        return _licenses.offerOf(twinId, brand);
    }

    /// @inheritdoc ITwinLedgerActions
    function hashLicenseTerms(LicenseTerms calldata terms) external pure returns (bytes32) {
        return LicenseBook.hashTerms(terms);
    }

    /// @inheritdoc ITwinLedgerActions
    function payeesOf(uint256 twinId) external view returns (Payee[] memory) {
        return _payees[twinId];
    }

    /// @inheritdoc ITwinLedgerActions
    function debtEntry(address brand, uint256 entry) external view returns (uint256 twinId, uint256 amount) {
        EscrowBook.DebtEntry storage debt = _escrow.debts[brand][entry];
        return (debt.twinId, debt.amount);
    }

    /// @inheritdoc ITwinLedgerActions
    function debtQueue(address brand) external view returns (uint256 head, uint256 length) {
        return (_escrow.accounts[brand].debtHead, _escrow.debts[brand].length);
    }

    // ================================================================== internal: corrections

    /// @dev Checks `proof` against its group's record; returns the record's key, the settlement time, the
    /// usage word and its split. The usage must have been paid.
    function _prove(UsageProof calldata proof)
        private
        view
        returns (bytes32 key, uint256 settledAt, uint256 usage, uint256 split)
    {
        key = HoldBook.groupKey(proof.batchDigest, proof.brand);
        uint256 record = _groups[key];
        if (record == 0) revert GroupUnknown(proof.batchDigest, proof.brand);
        uint256[] calldata results = proof.results;
        if (results.length != proof.splits.length) revert GroupProofMismatch(proof.batchDigest, proof.brand);
        // Of equal lengths (checked above), the packed words of results and splits cannot collide.
        // slither-disable-next-line encode-packed-collision
        bytes32 commitment = keccak256(abi.encodePacked(results, proof.splits));
        if (HoldBook.record(commitment, 0) != record & ~HoldBook.TIME_MASK) {
            revert GroupProofMismatch(proof.batchDigest, proof.brand);
        }
        uint256 index = proof.index;
        // Outcome code 0 (Paid) in the low 8 bits
        if (index >= results.length || results[index] & 0xff != 0) {
            revert GroupUsageNotPaid(proof.batchDigest, proof.brand, index);
        }
        return (key, uint40(record), results[index], proof.splits[index]);
    }

    /// @dev Refuses once the hold window after the group's settlement has passed.
    function _checkWindow(UsageProof calldata proof, uint256 settledAt) private view {
        // slither-disable-next-line timestamp
        if (block.timestamp >= settledAt + _holdWindow) {
            revert HoldWindowClosed(proof.batchDigest, proof.brand, settledAt + _holdWindow);
        }
    }

    /// @dev Voids the proved usage (within the window when `inWindow`): its funded part goes from the
    /// twin's held royalties back to the brand's escrow, its debt (what is still unpaid of it) is
    /// cancelled. Emits {UsageVoided}.
    function _void(UsageProof calldata proof, uint8 reason, bool inWindow)
        private
        returns (uint256 twinId, uint64 usageId)
    {
        (bytes32 key, uint256 settledAt, uint256 usage, uint256 split) = _prove(proof);
        if (inWindow) _checkWindow(proof, settledAt);
        usageId = uint64(usage >> 192);
        uint256 bit = 1 << (proof.index & 0xff);
        uint256 bitmap = _voided[key][proof.index >> 8];
        if (bitmap & bit != 0) revert UsageAlreadyVoided(proof.batchDigest, proof.brand, usageId);
        _voided[key][proof.index >> 8] = bitmap | bit;
        twinId = uint64(usage >> 128);
        uint256 funded = split >> HoldBook.FUNDED_SHIFT;
        if (funded != 0) {
            // Within the window (or frozen by a dispute opened within it) the funds are still held.
            _held[twinId] = HoldBook.take(_rollHeld(twinId), settledAt / _holdWindow, funded);
            _escrow.escrows[proof.brand].balance += uint128(funded);
        }
        uint256 cancelled = _escrow.cancelDebt(
            proof.brand, split & HoldBook.ENTRY_MASK, (split >> HoldBook.DEBT_SHIFT) & HoldBook.AMOUNT_MASK
        );
        emit UsageVoided(proof.batchDigest, proof.brand, usageId, twinId, funded, cancelled, reason);
    }

    function _isVoided(bytes32 key, uint256 index) private view returns (bool) {
        return _voided[key][index >> 8] & (1 << (index & 0xff)) != 0;
    }

    function _openDispute(uint256 id) private view returns (Dispute storage dispute) {
        dispute = _disputes[id];
        if (!dispute.open) revert DisputeNotOpen(id);
    }

    /// @dev Closes the dispute and counts it off its twin (its held royalties were brought to now first,
    /// so that they mature as usual from here).
    function _closeDispute(Dispute storage dispute) private {
        dispute.open = false;
        uint256 twinId = dispute.twinId;
        _held[twinId] = HoldBook.countDispute(_rollHeld(twinId), false);
    }
}
