// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ITwinLedgerActions} from "./interfaces/ITwinLedgerActions.sol";
import {EscrowBook} from "./libraries/EscrowBook.sol";
import {LicenseBook} from "./libraries/LicenseBook.sol";
import {LicenseCodec} from "./libraries/LicenseCodec.sol";
import {PayeeBook} from "./libraries/PayeeBook.sol";
import {SpendingBook} from "./libraries/SpendingBook.sol";
import {TwinLedgerBase} from "./TwinLedgerBase.sol";

/// @title TwinLedgerExtension
/// @notice The owners' and brands' actions on the ledger (direct and signed), and its views of licenses,
/// payees and debt. Deployed once per ledger and reached only through the ledger's fallback, which
/// `delegatecall`s it: it runs in the ledger's storage, under the ledger's address, and its events are
/// the ledger's. Called directly, it acts on its own empty storage and holds no funds.
contract TwinLedgerExtension is TwinLedgerBase, ITwinLedgerActions {
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
}
