// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The Twin Bridge ledger's types, events and errors
/// @notice Shared by {ITwinLedger} (the ledger's own functions) and {ITwinLedgerActions} (the owners' and
/// brands' actions and the views its extension serves at the ledger's address).
interface ITwinLedgerTypes {
    /// @notice Why a usage was (not) paid. `Paid` is the only paying outcome. Codes only ever grow.
    enum Outcome {
        Paid,
        UnknownTwin,
        NoLicense,
        LicenseNotStarted,
        LicenseExpired,
        LicenseRevoked,
        UsageTypeNotLicensed,
        UseCapReached,
        TwinPaused,
        ZeroQuantity,
        UsageInFuture,
        OfferNotAccepted,
        OverUsageLimit,
        OverPeriodLimit
    }

    /// @notice What a model disputes: a brand's uses in general, a settled group, one paid usage, or a
    /// usage reported (settled) after the license was revoked although used before the revocation.
    enum DisputeKind {
        Brand,
        Group,
        Usage,
        ReportedAfterRevocation
    }

    /// @notice Price per single use of one usage type, in payment-token base units.
    struct UsagePrice {
        uint8 usageType;
        uint256 price;
    }

    /// @notice What a model offers a brand when licensing their twin, and what the brand accepts (by its
    /// EIP-712 struct hash, the "terms hash").
    /// @param validFrom start of validity (inclusive); the license starts no earlier than its acceptance.
    /// @param validUntil end of validity (exclusive).
    /// @param maxUses cap on paid uses under this license (quantity counts), 0 for no cap.
    struct LicenseTerms {
        address brand;
        uint40 validFrom;
        uint40 validUntil;
        uint32 maxUses;
        bytes32 purposeHash;
        bytes32 consentHash;
        UsagePrice[] prices;
    }

    /// @notice A royalty share in basis points; the owner receives what the payees leave.
    struct Payee {
        address account;
        uint16 bps;
    }

    /// @notice Usages of one brand inside a batch, as packed usage words.
    struct UsageGroup {
        address brand;
        uint256[] usages;
    }

    /// @notice A batch of usages signed (EIP-712) by an attester.
    struct UsageBatch {
        uint256 deadline;
        UsageGroup[] groups;
    }

    /// @notice A license version (accepted, or offered and waiting) as stored and served to readers.
    struct License {
        uint40 validFrom;
        uint40 validUntil;
        uint32 maxUses;
        uint32 uses;
        bool revoked;
        UsagePrice[] prices;
    }

    /// @notice A brand's money in the ledger. The withdrawal times count only unpaused time: they are
    /// the times as of now and move later while the ledger is paused.
    struct BrandAccount {
        uint256 escrow;
        uint256 debt;
        uint256 debtReserve;
        uint256 pendingWithdrawal;
        uint40 withdrawalUnlocksAt;
        uint40 withdrawalLapsesAt;
    }

    /// @notice What a brand lets settlement spend, and who attests its usages.
    /// @param perUsage most one usage (price x quantity) may cost; a dearer one is rejected
    /// @param perPeriod most the usages settled in one spending period may cost together
    /// @param spentInPeriod what the usages settled in the current period cost
    /// @param periodStart start of the current period (periods are aligned to multiples of their length)
    /// @param pendingPerUsage a raise waiting for its delay (0 with no raise pending)
    /// @param pendingPerPeriod a raise waiting for its delay (0 with no raise pending)
    /// @param pendingEffectiveAt when the raise takes effect (0 with no raise pending)
    /// @param attester the brand's own attester, or zero when the bridge's attesters sign for it
    struct BrandLimits {
        uint256 perUsage;
        uint256 perPeriod;
        uint256 spentInPeriod;
        uint40 periodStart;
        uint256 pendingPerUsage;
        uint256 pendingPerPeriod;
        uint40 pendingEffectiveAt;
        address attester;
    }

    /// @notice Deployment settings of the ledger.
    /// @param noticePeriod seconds between an escrow withdrawal request and its unlock (at least
    /// MIN_NOTICE_PERIOD)
    /// @param spendingPeriod length of a brand's spending period in seconds (one day: 86,400)
    /// @param raiseDelay seconds before a brand's raised spending limits take effect
    /// @param defaultPerUsage spending limit per usage of a brand that never set its own
    /// @param defaultPerPeriod spending limit per period of a brand that never set its own
    /// @param holdWindow seconds a settlement's royalties are held (voidable by the brand, disputable by
    /// the model) before they can be distributed; 0: distributable at once, no voids, no disputes
    struct Config {
        uint40 noticePeriod;
        uint32 spendingPeriod;
        uint32 raiseDelay;
        uint256 defaultPerUsage;
        uint256 defaultPerPeriod;
        uint32 holdWindow;
    }

    /// @notice One usage of a settled group, proved against the group's record by the group as settled:
    /// `results` as in its {UsagesSettled} event and `splits[i]` for each result: 0 for a usage not paid,
    /// else `funded << 152 | debt << 48 | entry`, where `debt` is what the usage added to the brand's debt
    /// (its {DebtRecorded} amount, in the order the events came), `entry` that event's debt entry (0 with
    /// no debt) and `funded` the rest of its price x quantity, paid from escrow.
    struct UsageProof {
        bytes32 batchDigest;
        address brand;
        uint256 index;
        uint256[] results;
        uint256[] splits;
    }

    /// @notice A twin's royalties still held: `earlier` matures at `earlierMaturesAt`, `later` at
    /// `laterMaturesAt` (both times 0 while a dispute is open: nothing matures then). `matured` has
    /// matured but is not yet in the twin's accrued royalties (it moves there on the next distribution).
    struct HeldRoyalties {
        uint256 matured;
        uint256 earlier;
        uint40 earlierMaturesAt;
        uint256 later;
        uint40 laterMaturesAt;
        uint256 openDisputes;
    }

    /// @notice A dispute as stored: for a usage (or group) target, the group and the usage's index in it.
    struct Dispute {
        address brand;
        uint64 twinId;
        DisputeKind kind;
        bool open;
        bytes32 batchDigest;
        uint64 usageId;
        uint32 index;
        uint40 openedAt;
    }

    // ------------------------------------------------------------------ events

    /// @notice A twin was minted to `owner` by a registrar.
    event TwinMinted(uint256 indexed twinId, address indexed owner, string uri, bytes32 consentHash);

    /// @notice The owner offered the brand license version `version`; it becomes payable when the brand
    /// accepts it with `termsHash`. An offer with the number of a waiting offer replaces it.
    event LicenseOffered(
        uint256 indexed twinId,
        address indexed brand,
        uint256 indexed version,
        uint40 validFrom,
        uint40 validUntil,
        uint32 maxUses,
        bytes32 purposeHash,
        bytes32 consentHash,
        UsagePrice[] prices,
        bytes32 termsHash
    );

    /// @notice The brand accepted offer `version`; it replaces the earlier versions from `validFrom`
    /// (the later of the offered start and the acceptance).
    event LicenseAccepted(uint256 indexed twinId, address indexed brand, uint256 indexed version, uint40 validFrom);

    /// @notice The brand declined offer `version`; it is gone.
    event LicenseDeclined(uint256 indexed twinId, address indexed brand, uint256 indexed version);

    /// @notice The owner withdrew offer `version` before the brand accepted it; it is gone.
    event LicenseOfferWithdrawn(uint256 indexed twinId, address indexed brand, uint256 indexed version);

    /// @notice The brand's license for the twin (accepted version `version` and every version still
    /// running) ends at `revokedAt`; uses before still pay.
    event LicenseRevoked(uint256 indexed twinId, address indexed brand, uint256 indexed version, uint40 revokedAt);

    /// @notice No use of the twin at or after `at` is payable until it is unpaused.
    event TwinPaused(uint256 indexed twinId, uint40 at);

    /// @notice Uses of the twin at or after `at` are payable again.
    event TwinUnpaused(uint256 indexed twinId, uint40 at);

    /// @notice The twin's royalty split was replaced by `payees` (owner keeps the remainder).
    event PayeesSet(uint256 indexed twinId, Payee[] payees);

    /// @notice An action was carried out on the strength of `signer`'s EIP-712 signature.
    event SignedActionUsed(address indexed signer, uint256 nonce, bytes32 digest);

    /// @notice `account` cancelled its unused signatures: its next nonce is `newNonce`.
    event NoncesInvalidated(address indexed account, uint256 newNonce);

    /// @notice `amount` arrived for `brand`'s escrow from `from`; `toDebt` of it covers the brand's debt.
    event EscrowDeposited(address indexed brand, address indexed from, uint256 amount, uint256 toDebt);

    /// @notice The brand asked to withdraw `amount` (at most its escrow then) after `unlocksAt`; the request
    /// lapses if not used within the claim window. Both times move later by any time the ledger is paused.
    event EscrowWithdrawalRequested(address indexed brand, uint256 amount, uint40 unlocksAt);

    /// @notice The brand's pending escrow withdrawal was cancelled.
    event EscrowWithdrawalCancelled(address indexed brand);

    /// @notice `amount` of escrow left the ledger to the brand.
    event EscrowWithdrawn(address indexed brand, uint256 amount);

    /// @notice The brand's spending limits: in force from `effectiveAt` (now for a lowering, after the
    /// raise delay for a raise; a raise replaces any raise still waiting).
    event SpendingLimitsSet(address indexed brand, uint256 perUsage, uint256 perPeriod, uint40 effectiveAt);

    /// @notice From now on only `attester` (zero: the bridge's attesters) may attest the brand's usages.
    event BrandAttesterSet(address indexed brand, address indexed attester);

    /// @notice One brand's usages of a batch were settled. `results[i]` is the i-th usage word with its
    /// {Outcome} code in the low 8 bits; a `Paid` usage cost `price x quantity` under the license version
    /// covering its time (see {LicenseAccepted}); `paid` is the group's total, escrow and debt together.
    event UsagesSettled(
        bytes32 indexed batchDigest, address indexed brand, address indexed attester, uint256 paid, uint256[] results
    );

    /// @notice Escrow ran short: `amount` owed to `twinId` became debt entry `entry` of `brand`.
    event DebtRecorded(address indexed brand, uint256 indexed twinId, uint256 amount, uint256 entry);

    /// @notice `amount` of debt entry `entry` was paid into `twinId`'s royalty account.
    event DebtRepaid(address indexed brand, uint256 indexed twinId, uint256 amount, uint256 entry);

    /// @notice The brand voided paid usage `usageId` of its group in batch `batchDigest` (or the arbiter did,
    /// resolving a dispute): `refunded` went back from the twin's held royalties to the brand's escrow and
    /// `debtCancelled` of the usage's unpaid debt was cancelled. `reason` is the brand's reason code.
    event UsageVoided(
        bytes32 indexed batchDigest,
        address indexed brand,
        uint64 indexed usageId,
        uint256 twinId,
        uint256 refunded,
        uint256 debtCancelled,
        uint8 reason
    );

    /// @notice `amount` of debt entry `entry` was cancelled by a void; `reserveReturned` of the brand's debt
    /// reserve (deposited for debt no longer owed) went back to its escrow.
    event DebtCancelled(
        address indexed brand, uint256 indexed twinId, uint256 amount, uint256 entry, uint256 reserveReturned
    );

    /// @notice The twin's owner opened dispute `id`; the twin's held royalties do not mature until every
    /// dispute of the twin is resolved. `usageId` is 0 unless a usage is disputed.
    event DisputeOpened(
        uint256 indexed id,
        uint256 indexed twinId,
        address indexed brand,
        DisputeKind kind,
        bytes32 batchDigest,
        uint64 usageId,
        bytes32 reasonHash
    );

    /// @notice The arbiter closed dispute `id` without moving funds.
    event DisputeReleased(uint256 indexed id, uint256 indexed twinId);

    /// @notice The arbiter closed dispute `id` by voiding usage `usageId` (see {UsageVoided}).
    event DisputeVoided(uint256 indexed id, uint256 indexed twinId, uint64 usageId);

    /// @notice The arbiter closed dispute `id` by charging `brand` `amount` for the twin: from its escrow
    /// into the twin's accrued royalties, `toDebt` of it as debt where escrow fell short.
    event DisputeCharged(
        uint256 indexed id, uint256 indexed twinId, address indexed brand, uint256 amount, uint256 toDebt
    );

    /// @notice `amount` of the twin's royalty account was credited to `payee`.
    event RoyaltiesDistributed(uint256 indexed twinId, address indexed payee, uint256 amount);

    /// @notice `amount` was paid out to `payee`; `caller` triggered it.
    event PayeePaid(address indexed payee, address indexed caller, uint256 amount);

    // ------------------------------------------------------------------ errors

    error TwinIdOverflow(uint256 twinId);
    error TwinPauseUnchanged(uint256 twinId, bool paused);
    error TwinSignatureExpired(uint256 deadline);
    error TwinInvalidSigner(address expected);
    error NonceJumpInvalid(uint256 current, uint256 requested);
    error LicenseInvalidBrand(address brand);
    error LicenseInvalidWindow(uint40 validFrom, uint40 validUntil);
    error LicenseNoPrices();
    error LicenseTooManyPrices(uint256 count, uint256 max);
    error LicenseDuplicateUsageType(uint8 usageType);
    error LicensePriceTooHigh(uint8 usageType, uint256 price);
    error LicenseNotFound(uint256 twinId, address brand);
    error LicenseAlreadyEnded(uint256 twinId, address brand);
    error LicenseNoOffer(uint256 twinId, address brand);
    error LicenseOfferMismatch(uint256 twinId, address brand, uint256 version, bytes32 termsHash);
    error LicenseOfferExpired(uint256 twinId, address brand, uint256 version);
    error LicenseVersionMismatch(uint256 twinId, address brand, uint256 version);
    error PayeesTooMany(uint256 count, uint256 max);
    error PayeesInvalidAccount(address account);
    error PayeesInvalidShare(address account, uint16 bps);
    error PayeesTotalTooHigh(uint256 totalBps);
    error PayeesDuplicateAccount(address account);
    error EscrowZeroAmount();
    error EscrowInvalidBrand(address brand);
    error EscrowNoPendingWithdrawal(address brand);
    error EscrowWithdrawalLocked(address brand, uint40 unlocksAt);
    error EscrowWithdrawalLapsed(address brand, uint40 lapsedAt);
    error LedgerConfigInvalid();
    error LedgerAuthorityFixed();
    error LedgerExtensionMismatch(address extension);
    error SpendingLimitsInvalid(uint256 perUsage, uint256 perPeriod);
    error SettlementExpired(uint256 deadline);
    error SettlementInvalidAttester(address attester);
    error SettlementWrongAttester(address brand, address attester);
    error SettlementEmptyBatch();
    error SettlementInvalidBrand(address brand);
    error SettlementMalformedUsage(uint256 usage);
    error UsageAlreadyProcessed(address brand, uint64 usageId);
    error PayoutNothingToPay(address payee);
    error SettlementDuplicateGroup(bytes32 batchDigest, address brand);
    error HoldWindowDisabled();
    error HoldWindowClosed(bytes32 batchDigest, address brand, uint256 closedAt);
    error GroupUnknown(bytes32 batchDigest, address brand);
    error GroupProofMismatch(bytes32 batchDigest, address brand);
    error GroupUsageNotPaid(bytes32 batchDigest, address brand, uint256 index);
    error UsageAlreadyVoided(bytes32 batchDigest, address brand, uint64 usageId);
    error VoidUnauthorized(address caller, address brand);
    error DisputeInvalidTarget(uint256 twinId, DisputeKind kind);
    error DisputeTooMany(uint256 twinId);
    error DisputeNotOpen(uint256 id);
    error DisputeTargetMismatch(uint256 id);
}
