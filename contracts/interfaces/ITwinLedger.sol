// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ITwinLedgerTypes} from "./ITwinLedgerTypes.sol";

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
/// @dev The functions the ledger serves itself: minting, escrow, settlement, payouts, admin and the
/// views settlement needs. The owners' and brands' actions and the other views are {ITwinLedgerActions},
/// served at the same address by the ledger's extension.
interface ITwinLedger is ITwinLedgerTypes {
    // ------------------------------------------------------------------ twins

    /// @notice Mints a new twin to `owner` with its metadata URI and consent-record hash.
    /// @dev Requirements: the access manager lets the caller (REGISTRAR_ROLE); `owner` accepts ERC-721
    /// tokens. Emits {TwinMinted} and {IERC721-Transfer}.
    /// @return twinId the new token id (sequential from 1).
    function mint(address owner, string calldata uri, bytes32 consentHash) external returns (uint256 twinId);

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

    /// @notice A brand's escrow, debt, debt reserve and pending withdrawal.
    function brandAccount(address brand) external view returns (BrandAccount memory);

    /// @notice A brand's spending limits in force (a raise whose delay has passed counts), what it spent
    /// in the current period, a raise still waiting and its own attester.
    function brandLimits(address brand) external view returns (BrandLimits memory);

    /// @notice Amount credited to `payee` and not yet paid out.
    function claimable(address payee) external view returns (uint256);

    /// @notice Sum over all brands of escrow + debt reserve, over all twins of accrued royalties and over
    /// all payees of claimable amounts: what the ledger must hold in the payment token.
    function totalLiabilities() external view returns (uint256);
}
