// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ITwinLedgerTypes} from "./ITwinLedgerTypes.sol";

/// @title The owners' and brands' actions on the Twin Bridge ledger, and its views of licenses, payees and debt
/// @notice Served at the ledger's address by its extension ({TwinLedgerExtension}, reached through the
/// ledger's fallback): one address, one storage, one set of events. {ITwinLedgerFull} is both interfaces.
interface ITwinLedgerActions is ITwinLedgerTypes {
    /// @notice The hash of the deployment settings (token, manager, {Config}) the extension was built
    /// with; the ledger refuses an extension whose hash is not its own.
    function configHash() external view returns (bytes32);

    // ------------------------------------------------------------------ twins

    /// @notice The consent-record hash the twin was minted with.
    function consentHashOf(uint256 twinId) external view returns (bytes32);

    // ------------------------------------------------------------------ owner actions

    /// @notice Offers `terms.brand` a new license version for the twin; it is payable once the brand
    /// accepts it, and until then the brand's accepted version (if any) stays in force. Replaces an
    /// offer still waiting.
    /// @dev Requirements: caller is the owner or an approved operator; brand non-zero; the window ends
    /// after both its start and now; 1..MAX_PRICES prices with distinct usage types, each price at most
    /// MAX_PRICE. Emits {LicenseOffered} (and {LicenseOfferWithdrawn} for a replaced offer).
    function offerLicense(uint256 twinId, LicenseTerms calldata terms) external;

    /// @notice {offerLicense} on the strength of the owner's EIP-712 signature
    /// `OfferLicense(address owner,uint256 twinId,LicenseTerms terms,uint256 nonce,uint256 deadline)`.
    /// @dev Requirements: `owner` owns the twin, `deadline` not passed, `nonce` is the owner's current
    /// nonce, the signature is the owner's (ECDSA or ERC-1271). Emits {SignedActionUsed}.
    function offerLicenseBySig(
        address owner,
        uint256 twinId,
        LicenseTerms calldata terms,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Ends license version `version` of the brand now (uses before now still pay), or withdraws
    /// offer `version` if that is the offer waiting. Never needs the brand.
    /// @dev Requirements: caller is the owner or an approved operator; `version` is the brand's current
    /// accepted version and it has not ended, or the number of its waiting offer.
    /// Emits {LicenseRevoked} or {LicenseOfferWithdrawn}.
    function revokeLicense(uint256 twinId, address brand, uint256 version) external;

    /// @notice {revokeLicense} on the strength of the owner's EIP-712 signature
    /// `RevokeLicense(address owner,uint256 twinId,address brand,uint256 version,uint256 nonce,uint256 deadline)`.
    function revokeLicenseBySig(
        address owner,
        uint256 twinId,
        address brand,
        uint256 version,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Pauses (no use from now on is payable) or unpauses the twin.
    /// @dev Requirements: caller is the owner or an approved operator; the state changes.
    /// Emits {TwinPaused} or {TwinUnpaused}.
    function setTwinPaused(uint256 twinId, bool paused) external;

    /// @notice {setTwinPaused} on the strength of the owner's EIP-712 signature
    /// `SetTwinPaused(address owner,uint256 twinId,bool paused,uint256 nonce,uint256 deadline)`.
    function setTwinPausedBySig(
        address owner,
        uint256 twinId,
        bool paused,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Replaces the twin's payees. Royalties accrued so far are distributed first.
    /// @dev Requirements: caller is the owner or an approved operator; at most MAX_PAYEES distinct,
    /// non-zero accounts with non-zero shares totalling at most 10,000 bps.
    /// Emits {RoyaltiesDistributed} for pending royalties and {PayeesSet}.
    function setPayees(uint256 twinId, Payee[] calldata payees) external;

    /// @notice {setPayees} on the strength of the owner's EIP-712 signature
    /// `SetPayees(address owner,uint256 twinId,Payee[] payees,uint256 nonce,uint256 deadline)`.
    function setPayeesBySig(
        address owner,
        uint256 twinId,
        Payee[] calldata payees,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Cancels every unused signature of the caller with a nonce below `newNonce`.
    /// @dev Requirements: `newNonce` above the current nonce by at most MAX_NONCE_JUMP.
    /// Emits {NoncesInvalidated}.
    function invalidateNonces(uint256 newNonce) external;

    // ------------------------------------------------------------------ brand actions

    /// @notice The caller (the brand) accepts offer `version` of the twin, whose terms hash is `termsHash`.
    /// @dev Requirements: that offer waits and has that hash; its window has not ended. Emits {LicenseAccepted}.
    function acceptLicense(uint256 twinId, uint256 version, bytes32 termsHash) external;

    /// @notice {acceptLicense} on the strength of the brand's EIP-712 signature
    /// `AcceptLicense(address brand,uint256 twinId,uint256 version,bytes32 termsHash,uint256 nonce,uint256 deadline)`
    /// (ECDSA or ERC-1271). Emits {SignedActionUsed}.
    function acceptLicenseBySig(
        address brand,
        uint256 twinId,
        uint256 version,
        bytes32 termsHash,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice The caller (the brand) declines offer `version` of the twin. Emits {LicenseDeclined}.
    function declineLicense(uint256 twinId, uint256 version) external;

    /// @notice Sets the caller's spending limits. A lowering (neither limit higher than in force) takes
    /// effect at once and drops a waiting raise; any raise takes effect after the raise delay.
    /// Limits are kept as `mantissa x 10**exponent` (28-bit mantissa, exponent below 16) rounded down.
    /// @dev Requirements: 0 < perUsage <= perPeriod. Emits {SpendingLimitsSet}.
    function setSpendingLimits(uint256 perUsage, uint256 perPeriod) external;

    /// @notice Names the caller's own attester (zero: the bridge's attesters again); from now on a batch
    /// group of the brand must be signed by it. Emits {BrandAttesterSet}.
    function setBrandAttester(address attester) external;

    // ------------------------------------------------------------------ escrow

    /// @notice The caller (a brand) asks to withdraw up to `amount` of unspent escrow (capped at its escrow
    /// now) after the notice period; the request lapses CLAIM_WINDOW after it unlocks.
    /// @dev Replaces an earlier request. Requirements: the capped amount is not zero.
    /// Emits {EscrowWithdrawalRequested}.
    function requestEscrowWithdrawal(uint256 amount) external;

    /// @notice Cancels the caller's pending escrow withdrawal. Emits {EscrowWithdrawalCancelled}.
    function cancelEscrowWithdrawal() external;

    // ------------------------------------------------------------------ corrections and disputes

    /// @notice The caller (the brand) voids its paid usage `proof.results[proof.index]` of the group it
    /// settled in batch `proof.batchDigest`, while the group's royalties are held: the usage's funded
    /// part goes from the twin's held royalties back to the brand's escrow and what is still unpaid of its
    /// debt is cancelled. `reason` is the brand's own code. A correction is a void and a new usage.
    /// @dev Requirements: `proof.brand` is the caller; the group was recorded (a hold window is set) and
    /// `proof` matches its record; the usage was paid and not voided; the hold window since the group's
    /// settlement has not passed (refused at `settledAt + holdWindow`). The license's use count and the
    /// brand's period spend are not given back. Emits {UsageVoided} and {DebtCancelled} for debt cancelled.
    function voidUsage(UsageProof calldata proof, uint8 reason) external;

    /// @notice {voidUsage} on the strength of the brand's (`proof.brand`) EIP-712 signature
    /// `VoidUsage(address brand,bytes32 batchDigest,uint256 usageId,uint8 reason,uint256 nonce,uint256 deadline)`
    /// (ECDSA or ERC-1271), relayed by anyone. Emits {SignedActionUsed}.
    function voidUsageBySig(
        UsageProof calldata proof,
        uint8 reason,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice The twin's owner disputes `target.brand` (kind Brand: no group, any time), or the group
    /// `target` names (kind Group: `target.index` a paid usage of the twin in it), or its usage
    /// `target.index` (kinds Usage and ReportedAfterRevocation), with the hash of its reason. Until the
    /// arbiter resolves every open dispute of the twin, none of its held royalties mature.
    /// @dev Requirements: caller is the owner or an approved operator; a hold window is set; the brand is
    /// not zero; for a group or usage, `target` matches the group's record, names a paid, unvoided usage
    /// of the twin and the hold window since the settlement has not passed; fewer than 65,535 disputes of
    /// the twin open. Emits {DisputeOpened}.
    /// @return id the dispute's id (sequential from 1)
    function openDispute(uint256 twinId, DisputeKind kind, UsageProof calldata target, bytes32 reasonHash)
        external
        returns (uint256 id);

    /// @notice The arbiter closes dispute `id` without moving funds; the twin's held royalties mature as
    /// usual once no dispute of it is open (at most one hold window later).
    /// @dev Requirements: the access manager lets the caller (ARBITER_ROLE); the dispute is open.
    /// Emits {DisputeReleased}.
    function releaseDispute(uint256 id) external;

    /// @notice The arbiter closes dispute `id` by voiding the disputed usage (for a group dispute: a usage
    /// of the twin in that group) as {voidUsage} does, without the window check.
    /// @dev Requirements: ARBITER_ROLE; the dispute is open and of kind Group, Usage or
    /// ReportedAfterRevocation; `proof` names its group (and its usage) and proves a paid, unvoided usage
    /// of the twin. Emits {UsageVoided} and {DisputeVoided}.
    function resolveDisputeByVoid(uint256 id, UsageProof calldata proof, uint8 reason) external;

    /// @notice The arbiter closes dispute `id` by charging its brand `amount` for the twin: from escrow into
    /// the twin's accrued royalties (distributable at once), any shortfall as debt owed to the twin.
    /// @dev Requirements: ARBITER_ROLE; the dispute is open; amount > 0.
    /// Emits {DisputeCharged} (and {DebtRecorded} for a shortfall).
    function resolveDisputeByCharge(uint256 id, uint256 amount) external;

    /// @notice The twin's royalties still held, what matured of them and when the rest matures.
    function heldRoyalties(uint256 twinId) external view returns (HeldRoyalties memory);

    /// @notice The record of `brand`'s group in batch `batchDigest` (zeros if none): the high 216 bits of
    /// its commitment `keccak256(abi.encodePacked(results, splits))`, when it was settled (the time its
    /// usages were reported, beside each usage's time of use) and the end of its hold window (exclusive).
    function groupRecord(bytes32 batchDigest, address brand)
        external
        view
        returns (bytes32 commitment, uint40 settledAt, uint40 voidableUntil);

    /// @notice Whether usage `index` of `brand`'s group in batch `batchDigest` was voided.
    function isUsageVoided(bytes32 batchDigest, address brand, uint256 index) external view returns (bool);

    /// @notice Dispute `id` as stored (all zero for an unknown id).
    function disputeOf(uint256 id) external view returns (Dispute memory);

    // ------------------------------------------------------------------ views

    /// @notice The current (accepted) license version of `brand` for the twin and its number.
    function licenseOf(uint256 twinId, address brand) external view returns (License memory license, uint256 version);

    /// @notice An accepted license version (0-based) of `brand` for the twin.
    function licenseVersion(uint256 twinId, address brand, uint256 version) external view returns (License memory);

    /// @notice Number of license versions `brand` accepted for the twin (the number its next offer gets).
    function licenseVersionCount(uint256 twinId, address brand) external view returns (uint256);

    /// @notice The offer waiting for `brand`'s acceptance, its version number and terms hash.
    function offerOf(uint256 twinId, address brand)
        external
        view
        returns (License memory terms, uint256 version, bytes32 termsHash);

    /// @notice The EIP-712 struct hash of `terms`: what a brand accepts.
    function hashLicenseTerms(LicenseTerms calldata terms) external pure returns (bytes32);

    /// @notice The twin's payees (owner receives the remainder).
    function payeesOf(uint256 twinId) external view returns (Payee[] memory);

    /// @notice Debt entry `entry` of `brand`: the twin owed and the amount still unpaid.
    function debtEntry(address brand, uint256 entry) external view returns (uint256 twinId, uint256 amount);

    /// @notice Index of the first unpaid debt entry and total number of entries of `brand`.
    function debtQueue(address brand) external view returns (uint256 head, uint256 length);
}
