// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Twin Bridge ledger: digital-twin ownership, licenses both parties agreed to, bounded per-use royalties
/// @notice Each model owns their twin as an ERC-721 token. The owner offers brands licenses (usage types
/// with a price per use, validity window, optional cap, purpose and consent hashes); an offer is payable
/// only once the brand has accepted that exact version and its terms hash. The owner revokes licenses,
/// pauses the twin and splits royalties with payees without the brand. Brands prepay escrow in one
/// ERC-20 and bound what settlement may spend (per usage and per period). Usage batches signed by an
/// attester (the bridge's, holding ATTESTER_ROLE in the access manager, or the brand's own) settle per
/// use, paying the twin's royalty account, which is split between the payees and the current owner.
/// Every state change emits an event from which an auditor can rebuild the whole state.
///
/// A usage travels as one packed word (see {UsageCodec}):
/// `usageId (64) | twinId (64) | usedAt (40) | quantity (32) | usageType (8)` from the high bits down,
/// the low 48 bits zero. A settlement result is the usage word with its {Outcome} code in the low 8 bits.
interface ITwinLedger {
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
    struct Config {
        uint40 noticePeriod;
        uint32 spendingPeriod;
        uint32 raiseDelay;
        uint256 defaultPerUsage;
        uint256 defaultPerPeriod;
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
    error SpendingLimitsInvalid(uint256 perUsage, uint256 perPeriod);
    error SettlementExpired(uint256 deadline);
    error SettlementInvalidAttester(address attester);
    error SettlementWrongAttester(address brand, address attester);
    error SettlementEmptyBatch();
    error SettlementInvalidBrand(address brand);
    error SettlementMalformedUsage(uint256 usage);
    error UsageAlreadyProcessed(address brand, uint64 usageId);
    error PayoutNothingToPay(address payee);

    // ------------------------------------------------------------------ twins

    /// @notice Mints a new twin to `owner` with its metadata URI and consent-record hash.
    /// @dev Requirements: the access manager lets the caller (REGISTRAR_ROLE); `owner` accepts ERC-721
    /// tokens. Emits {TwinMinted} and {IERC721-Transfer}.
    /// @return twinId the new token id (sequential from 1).
    function mint(address owner, string calldata uri, bytes32 consentHash) external returns (uint256 twinId);

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

    /// @notice Deposits `amount` from the caller into `brand`'s escrow; outstanding debt is covered first.
    /// @dev Requirements: not paused; amount > 0; brand non-zero; allowance. Emits {EscrowDeposited}
    /// and {DebtRepaid} for each debt entry paid.
    function deposit(address brand, uint256 amount) external;

    /// @notice {deposit} after an EIP-2612 permit from the caller to this ledger.
    function depositWithPermit(address brand, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;

    /// @notice Pays outstanding debt entries of `brand` from its debt reserve, at most `maxEntries`.
    function repayDebt(address brand, uint256 maxEntries) external;

    /// @notice The caller (a brand) asks to withdraw up to `amount` of unspent escrow (capped at its escrow
    /// now) after the notice period; the request lapses CLAIM_WINDOW after it unlocks.
    /// @dev Replaces an earlier request. Requirements: the capped amount is not zero.
    /// Emits {EscrowWithdrawalRequested}.
    function requestEscrowWithdrawal(uint256 amount) external;

    /// @notice Cancels the caller's pending escrow withdrawal. Emits {EscrowWithdrawalCancelled}.
    function cancelEscrowWithdrawal() external;

    /// @notice Withdraws the caller's pending amount (capped at its escrow) once unlocked, before it lapses.
    /// @dev Refused while the ledger is paused: the notice and claim window count only unpaused time, so
    /// that a pause of settlement cannot run out a brand's notice. Emits {EscrowWithdrawn}.
    function withdrawEscrow() external;

    // ------------------------------------------------------------------ settlement

    /// @notice Settles a batch of usages signed by `attester`; callable by anyone.
    /// @dev Requirements: not paused; deadline not passed; the signature is `attester`'s (ECDSA or
    /// ERC-1271); for each group, `attester` is the brand's own attester, or the brand has none and
    /// `attester` holds ATTESTER_ROLE in the access manager; every usage word has zero low 48 bits, an id
    /// in [2**62, 2**63) when the brand has its own attester and below 2**62 when not, and an id not
    /// processed before. Every usage is paid or rejected with a reason.
    /// Emits one {UsagesSettled} per group and {DebtRecorded} on escrow shortfall.
    function settle(UsageBatch calldata batch, address attester, bytes calldata signature) external;

    /// @notice Whether the brand's usage id has been processed (paid or rejected). Ids in [2**62, 2**63)
    /// belong to brands with their own attester (one id space per brand); ids below 2**62 to the
    /// bridge's attesters (one id space for all brands they attest).
    function isUsageProcessed(address brand, uint64 usageId) external view returns (bool);

    /// @notice The EIP-712 digest an attester signs for `batch`.
    function hashUsageBatch(UsageBatch calldata batch) external view returns (bytes32);

    // ------------------------------------------------------------------ payouts

    /// @notice Splits the listed twins' royalty accounts between their payees and owners.
    /// @dev Emits {RoyaltiesDistributed} per credited account.
    function distribute(uint256[] calldata twinIds) external;

    /// @notice Distributes the listed twins, then pays the caller all it is owed.
    /// @dev Works while the ledger is paused. Emits {PayeePaid}.
    function withdraw(uint256[] calldata twinIds) external;

    /// @notice Distributes the listed twins, then pays `payee` all it is owed; callable by anyone.
    /// @dev Works while the ledger is paused. Emits {PayeePaid}.
    function payout(address payee, uint256[] calldata twinIds) external;

    // ------------------------------------------------------------------ admin

    /// @notice Emergency stop of settlement, deposits and escrow withdrawals (payouts keep working).
    /// @dev Requirements: the access manager lets the caller (PAUSER_ROLE).
    function pause() external;

    /// @notice Ends the emergency stop.
    function unpause() external;

    // ------------------------------------------------------------------ views

    /// @notice The payment token.
    function paymentToken() external view returns (address);

    /// @notice The deployment settings.
    function config() external view returns (Config memory);

    /// @notice Seconds the ledger has been paused in all, the current pause included.
    function pausedSeconds() external view returns (uint256);

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

    /// @notice Price per use the brand pays for `usageType` at time `at`, with the outcome of the check
    /// (ignoring the cap, the pause and the brand's spending limits).
    function priceAt(uint256 twinId, address brand, uint8 usageType, uint40 at)
        external
        view
        returns (Outcome outcome, uint256 price);

    /// @notice The twin's pause state: `pausedSince` is 0 when not paused.
    function twinState(uint256 twinId)
        external
        view
        returns (uint256 accrued, uint40 pausedSince, uint256 pauseIntervals);

    /// @notice Whether a use of the twin at `at` falls into a pause.
    function isPausedAt(uint256 twinId, uint40 at) external view returns (bool);

    /// @notice The twin's payees (owner receives the remainder).
    function payeesOf(uint256 twinId) external view returns (Payee[] memory);

    /// @notice A brand's escrow, debt, debt reserve and pending withdrawal.
    function brandAccount(address brand) external view returns (BrandAccount memory);

    /// @notice A brand's spending limits in force (a raise whose delay has passed counts), what it spent
    /// in the current period, a raise still waiting and its own attester.
    function brandLimits(address brand) external view returns (BrandLimits memory);

    /// @notice Debt entry `entry` of `brand`: the twin owed and the amount still unpaid.
    function debtEntry(address brand, uint256 entry) external view returns (uint256 twinId, uint256 amount);

    /// @notice Index of the first unpaid debt entry and total number of entries of `brand`.
    function debtQueue(address brand) external view returns (uint256 head, uint256 length);

    /// @notice Amount credited to `payee` and not yet paid out.
    function claimable(address payee) external view returns (uint256);

    /// @notice Sum over all brands of escrow + debt reserve, over all twins of accrued royalties and over
    /// all payees of claimable amounts: what the ledger must hold in the payment token.
    function totalLiabilities() external view returns (uint256);
}
