// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Twin Bridge ledger: digital-twin ownership, consent-grade licenses and per-use royalties
/// @notice Each model owns their twin as an ERC-721 token. The owner grants brands licenses (usage types
/// with a price per use, validity window, optional cap, purpose and consent hashes), revokes them,
/// pauses the twin and splits royalties with payees. Brands prepay escrow in one ERC-20; usage
/// batches signed by an attester settle per use, paying the twin's royalty account, which is split
/// between the payees and the current owner. Every state change emits an event from which an
/// auditor can rebuild the whole state.
///
/// A usage travels as one packed word (see {UsageCodec}):
/// `usageId (64) | twinId (64) | usedAt (40) | quantity (32) | usageType (8)` from the high bits down.
/// A settlement result is the usage word with its {Outcome} code in the low 8 bits.
interface ITwinLedger {
    /// @notice Why a usage was (not) paid. `Paid` is the only paying outcome.
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
        UsageInFuture
    }

    /// @notice Price per single use of one usage type, in payment-token base units.
    struct UsagePrice {
        uint8 usageType;
        uint256 price;
    }

    /// @notice What a model signs when licensing their twin to a brand.
    /// @param validFrom start of validity (inclusive); an earlier time means "from the grant".
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

    /// @notice A license version as stored and served to readers.
    struct License {
        uint40 validFrom;
        uint40 validUntil;
        uint32 maxUses;
        uint32 uses;
        bool revoked;
        UsagePrice[] prices;
    }

    /// @notice A brand's money in the ledger.
    struct BrandAccount {
        uint256 escrow;
        uint256 debt;
        uint256 debtReserve;
        uint256 pendingWithdrawal;
        uint40 withdrawalUnlocksAt;
    }

    // ------------------------------------------------------------------ events

    /// @notice A twin was minted to `owner` by a registrar.
    event TwinMinted(uint256 indexed twinId, address indexed owner, string uri, bytes32 consentHash);

    /// @notice A license version was granted; it replaces the previous one from `validFrom`.
    event LicenseGranted(
        uint256 indexed twinId,
        address indexed brand,
        uint256 indexed version,
        uint40 validFrom,
        uint40 validUntil,
        uint32 maxUses,
        bytes32 purposeHash,
        bytes32 consentHash,
        UsagePrice[] prices
    );

    /// @notice The brand's license for the twin ends at `revokedAt` (uses before still pay).
    event LicenseRevoked(uint256 indexed twinId, address indexed brand, uint256 indexed version, uint40 revokedAt);

    /// @notice No use of the twin at or after `at` is payable until it is unpaused.
    event TwinPaused(uint256 indexed twinId, uint40 at);

    /// @notice Uses of the twin at or after `at` are payable again.
    event TwinUnpaused(uint256 indexed twinId, uint40 at);

    /// @notice The twin's royalty split was replaced by `payees` (owner keeps the remainder).
    event PayeesSet(uint256 indexed twinId, Payee[] payees);

    /// @notice An owner action was carried out on the strength of `signer`'s EIP-712 signature.
    event SignedActionUsed(address indexed signer, uint256 nonce, bytes32 digest);

    /// @notice `amount` arrived for `brand`'s escrow from `from`; `toDebt` of it covers the brand's debt.
    event EscrowDeposited(address indexed brand, address indexed from, uint256 amount, uint256 toDebt);

    /// @notice The brand asked to withdraw `amount` of unspent escrow after `unlocksAt`.
    event EscrowWithdrawalRequested(address indexed brand, uint256 amount, uint40 unlocksAt);

    /// @notice The brand's pending escrow withdrawal was cancelled.
    event EscrowWithdrawalCancelled(address indexed brand);

    /// @notice `amount` of escrow left the ledger to the brand.
    event EscrowWithdrawn(address indexed brand, uint256 amount);

    /// @notice One brand's usages of a batch were settled. `results[i]` is the i-th usage word with its
    /// {Outcome} code in the low 8 bits; a `Paid` usage cost `price x quantity` under the license version
    /// covering its time (see {LicenseGranted}); `paid` is the group's total, escrow and debt together.
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
    error LicenseInvalidBrand(address brand);
    error LicenseInvalidWindow(uint40 validFrom, uint40 validUntil);
    error LicenseNoPrices();
    error LicenseTooManyPrices(uint256 count, uint256 max);
    error LicenseDuplicateUsageType(uint8 usageType);
    error LicensePriceTooHigh(uint8 usageType, uint256 price);
    error LicenseNotFound(uint256 twinId, address brand);
    error LicenseAlreadyEnded(uint256 twinId, address brand);
    error PayeesTooMany(uint256 count, uint256 max);
    error PayeesInvalidAccount(address account);
    error PayeesInvalidShare(address account, uint16 bps);
    error PayeesTotalTooHigh(uint256 totalBps);
    error PayeesDuplicateAccount(address account);
    error EscrowZeroAmount();
    error EscrowInvalidBrand(address brand);
    error EscrowNoPendingWithdrawal(address brand);
    error EscrowWithdrawalLocked(address brand, uint40 unlocksAt);
    error SettlementExpired(uint256 deadline);
    error SettlementInvalidAttester(address signer);
    error SettlementEmptyBatch();
    error SettlementInvalidBrand(address brand);
    error UsageAlreadyProcessed(uint64 usageId);
    error PayoutNothingToPay(address payee);
    error AttesterRotationInvalid(address oldAttester, address newAttester);

    // ------------------------------------------------------------------ twins

    /// @notice Mints a new twin to `owner` with its metadata URI and consent-record hash.
    /// @dev Requirements: caller has REGISTRAR_ROLE; `owner` accepts ERC-721 tokens.
    /// Emits {TwinMinted} and {IERC721-Transfer}.
    /// @return twinId the new token id (sequential from 1).
    function mint(address owner, string calldata uri, bytes32 consentHash) external returns (uint256 twinId);

    /// @notice The consent-record hash the twin was minted with.
    function consentHashOf(uint256 twinId) external view returns (bytes32);

    // ------------------------------------------------------------------ owner actions

    /// @notice Grants (or replaces from its start) the license of `terms.brand` for the twin.
    /// @dev Requirements: caller is the owner or an approved operator; brand non-zero; the window is
    /// non-empty and ends in the future; 1..MAX_PRICES prices with distinct usage types, each price
    /// at most MAX_PRICE. Emits {LicenseGranted}.
    function grantLicense(uint256 twinId, LicenseTerms calldata terms) external;

    /// @notice {grantLicense} on the strength of the owner's EIP-712 signature.
    /// @dev Requirements: `deadline` not passed, `nonce` is the owner's current nonce, the signature
    /// is the owner's (ECDSA or ERC-1271). Emits {SignedActionUsed} and {LicenseGranted}.
    function grantLicenseBySig(
        uint256 twinId,
        LicenseTerms calldata terms,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Ends the brand's license now; uses before now still pay.
    /// @dev Requirements: caller is the owner or an approved operator; a license exists and has not
    /// ended. Emits {LicenseRevoked}.
    function revokeLicense(uint256 twinId, address brand) external;

    /// @notice {revokeLicense} on the strength of the owner's EIP-712 signature.
    function revokeLicenseBySig(
        uint256 twinId,
        address brand,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Pauses (no use from now on is payable) or unpauses the twin.
    /// @dev Requirements: caller is the owner or an approved operator; the state changes.
    /// Emits {TwinPaused} or {TwinUnpaused}.
    function setTwinPaused(uint256 twinId, bool paused) external;

    /// @notice {setTwinPaused} on the strength of the owner's EIP-712 signature.
    function setTwinPausedBySig(
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

    /// @notice {setPayees} on the strength of the owner's EIP-712 signature.
    function setPayeesBySig(
        uint256 twinId,
        Payee[] calldata payees,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

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

    /// @notice The caller (a brand) asks to withdraw `amount` of unspent escrow after the notice period.
    /// @dev Replaces an earlier request. Emits {EscrowWithdrawalRequested}.
    function requestEscrowWithdrawal(uint256 amount) external;

    /// @notice Cancels the caller's pending escrow withdrawal. Emits {EscrowWithdrawalCancelled}.
    function cancelEscrowWithdrawal() external;

    /// @notice Withdraws the caller's pending amount (capped at its escrow) once unlocked.
    /// @dev Works while the ledger is paused. Emits {EscrowWithdrawn}.
    function withdrawEscrow() external;

    // ------------------------------------------------------------------ settlement

    /// @notice Settles a batch of usages signed by an attester; callable by anyone.
    /// @dev Requirements: not paused; deadline not passed; signer holds ATTESTER_ROLE; no usage id
    /// processed before. Every usage is paid or rejected with a reason.
    /// Emits one {UsagesSettled} per group and {DebtRecorded} on escrow shortfall.
    function settle(UsageBatch calldata batch, bytes calldata signature) external;

    /// @notice Whether a usage id has been processed (paid or rejected).
    function isUsageProcessed(uint64 usageId) external view returns (bool);

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

    /// @notice Grants ATTESTER_ROLE to `newAttester` and revokes it from `oldAttester` in one step.
    /// @dev Requirements: caller is the default admin; `oldAttester` holds the role and `newAttester`
    /// does not. Emits {IAccessControl-RoleGranted} and {IAccessControl-RoleRevoked}.
    function rotateAttester(address oldAttester, address newAttester) external;

    /// @notice Emergency stop of settlement and deposits (withdrawals and payouts keep working).
    function pause() external;

    /// @notice Ends the emergency stop.
    function unpause() external;

    // ------------------------------------------------------------------ views

    /// @notice The payment token.
    function paymentToken() external view returns (address);

    /// @notice Seconds between an escrow withdrawal request and its unlock.
    function escrowNoticePeriod() external view returns (uint40);

    /// @notice The current license version of `brand` for the twin and its number.
    function licenseOf(uint256 twinId, address brand) external view returns (License memory license, uint256 version);

    /// @notice A stored license version (0-based) of `brand` for the twin.
    function licenseVersion(uint256 twinId, address brand, uint256 version) external view returns (License memory);

    /// @notice Number of license versions granted to `brand` for the twin.
    function licenseVersionCount(uint256 twinId, address brand) external view returns (uint256);

    /// @notice Price per use the brand pays for `usageType` at time `at`, with the outcome of the check
    /// (ignoring the cap and pause).
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
