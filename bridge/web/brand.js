// Brand view: the API key (session storage only) opens the brand's escrow and debt (with deposit,
// withdrawal request and withdrawal, the brand's own transactions from its wallet), spending limits
// (with a raise waiting for its delay), the license offers waiting for its acceptance (accepted
// with the brand's wallet signature the bridge relays, declined with the brand's own transaction),
// licensed twins with prices, and its recent usage events with their on-chain proof.
import {
  ApiError,
  api,
  ensureChain,
  errorText,
  h,
  isoDateTime,
  loading,
  notify,
  pollAction,
  proof,
  shortHex,
  state,
  table,
  TOKEN,
  toUnits,
  unixDate,
  unixDateTime,
  usd,
  wallet,
  walletReason,
  words,
} from "./lib.js";

const STORAGE = "twin-bridge.api-key";
const PAGE = 20;
const MINED_TIMEOUT_S = 120;
const $ = (id) => document.getElementById(id);

/** The open brand ({brand, key}) and its escrow as last read (GET /v1/brand/escrow). */
let session = null;
let escrowNow = null;

export function showBrand() {
  $("brand-login").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      $("brand-error").textContent = "Enter your API key.";
      return;
    }
    open(key);
  });
  $("brand-logout").addEventListener("click", () => {
    sessionStorage.removeItem(STORAGE);
    $("api-key").value = "";
    $("brand-body").hidden = true;
    $("brand-logout").hidden = true;
    $("api-key").focus();
  });
  $("form-deposit").addEventListener("submit", (event) => escrowAction(event, deposit));
  $("form-withdrawal-request").addEventListener("submit", (event) => escrowAction(event, requestWithdrawal));
  $("form-withdraw").addEventListener("submit", (event) => escrowAction(event, withdraw));
  const saved = sessionStorage.getItem(STORAGE);
  if (saved) open(saved);
}

async function open(key) {
  $("brand-error").textContent = "";
  let brand;
  try {
    brand = await api("/v1/brand", { key });
  } catch (err) {
    $("brand-error").textContent = err instanceof ApiError && err.status === 401
      ? "This API key is not valid for this bridge."
      : `Could not open the brand: ${err.message}`;
    return;
  }
  sessionStorage.setItem(STORAGE, key);
  $("api-key").value = "";
  $("brand-logout").hidden = false;
  $("brand-body").hidden = false;
  $("brand-name").replaceChildren(h("strong", {}, brand.name), " · ", h("code", { id: "brand-address" }, brand.address));
  session = { brand, key };
  await Promise.all([account(brand), escrow(key), limits(key), offers(brand, key), licenses(brand), events(key)]);
}

const pricesOf = (prices) =>
  prices.map((p) => h("div", {}, `${words(p.usage_type || `type ${p.usage_type_code}`)}: ${usd(p.price)}`));

function figure(title, amount, source, id) {
  return h("div", { class: "card figure" }, h("h3", {}, title), h("p", { class: "big", id }, usd(amount)), proof(source, title));
}

async function account(brand) {
  const box = $("brand-account");
  box.replaceChildren(loading("Loading escrow and debt…"));
  try {
    const a = await api(`/v1/brands/${brand.address}/account?changes=5`);
    box.replaceChildren(
      figure("Escrow", a.escrow, a.source, "brand-escrow"),
      figure("Debt", a.debt, a.source, "brand-debt"),
      h("div", { class: "card figure" }, h("h3", {}, "Charged for usages"), h("p", { class: "big", id: "brand-charged" }, usd(a.totals.charged)),
        h("p", { class: "small" }, `Deposited ${usd(a.totals.deposited)}; withdrawal pending ${usd(a.pending_withdrawal)}`)),
    );
  } catch (err) {
    box.replaceChildren(err.status === 404
      ? h("p", {}, "No escrow deposit for this brand on the ledger yet.")
      : errorText(`Could not load the account: ${err.message}`));
  }
}

async function licenses(brand) {
  const box = $("brand-licenses");
  box.replaceChildren(loading("Loading licenses…"));
  try {
    const rows = [];
    let path = "/v1/twins?limit=500";
    while (path) {
      const page = await api(path);
      for (const twin of page.items) {
        const lic = twin.licenses.find((l) => l.brand.toLowerCase() === brand.address.toLowerCase());
        if (!lic) continue;
        const v = lic.current;
        rows.push([
          `#${twin.twin_id}`,
          pricesOf(v.prices),
          `${unixDate(v.valid_from)} → ${unixDate(v.valid_until)}`,
          v.max_uses ? `${v.uses} of ${v.max_uses}` : `${v.uses} (no cap)`,
          h("span", {}, state(lic.state), twin.pause.paused ? [" ", state("paused")] : null),
          proof(v.source, `license of twin ${twin.twin_id}`),
        ]);
      }
      path = page.next;
    }
    box.replaceChildren(table("Licenses held by this brand", [{ label: "Twin" }, { label: "Prices per use" },
      { label: "Valid" }, { label: "Uses" }, { label: "State" }, { label: "Proof" }], rows, "No twin is licensed to this brand."));
  } catch (err) {
    box.replaceChildren(errorText(`Could not load licenses: ${err.message}`));
  }
}

/** A settled usage's royalty, and what of it became the brand's debt when escrow fell short. */
function paidWith(e) {
  if (!e.recorded_as_debt || BigInt(e.recorded_as_debt) === 0n) return usd(e.amount);
  return h("span", { title: `${usd(e.paid_from_escrow)} from escrow, ${usd(e.recorded_as_debt)} as debt` },
    usd(e.amount), h("span", { class: "small" }, ` (${usd(e.recorded_as_debt)} as debt)`));
}

async function events(key, path = `/v1/usage-events?limit=${PAGE}`) {
  const box = $("brand-events");
  box.replaceChildren(loading("Loading usage events…"));
  try {
    const page = await api(path, { key });
    const rows = page.items.map((e) => [
      h("code", {}, e.event_id),
      `#${e.twin_id}`,
      words(e.usage_type),
      String(e.quantity),
      isoDateTime(e.used_at),
      h("span", { title: e.sentence || e.waiting?.sentence || e.error || "" }, state(e.status),
        e.status === "rejected" && e.code ? ` ${words(e.code)}` : null,
        e.waiting ? h("span", { class: "small" }, ` ${e.waiting.sentence}`) : null),
      paidWith(e),
      e.tx_hash ? proof(e, `usage ${e.event_id}`) : h("span", { class: "small" }, "pending"),
    ]);
    box.replaceChildren(
      table("Newest first", [{ label: "Event" }, { label: "Twin" }, { label: "Type" }, { label: "Qty", num: true },
        { label: "Used at" }, { label: "Status" }, { label: "Royalty", num: true }, { label: "Proof" }], rows, "No usage reported yet."),
      h("div", { class: "pager" },
        h("button", { type: "button", onclick: () => events(key) }, "Refresh"),
        page.next ? h("button", { type: "button", onclick: () => events(key, page.next) }, "Older events") : null),
    );
  } catch (err) {
    box.replaceChildren(errorText(`Could not load usage events: ${err.message}`));
  }
}

// ---------------------------------------------------------------- escrow

async function escrow(key) {
  const box = $("brand-escrow-now");
  box.replaceChildren(loading("Loading escrow…"));
  try {
    escrowNow = await api("/v1/brand/escrow", { key });
  } catch (err) {
    escrowNow = null;
    box.replaceChildren(errorText(`Could not load the escrow: ${err.message}`));
    return;
  }
  const e = escrowNow;
  const pending = BigInt(e.pending_withdrawal) > 0n;
  let when = null;
  if (pending) {
    const stage = e.withdrawable ? "withdrawable" : e.chain_time < e.withdrawal_unlocks_at ? "locked" : "lapsed";
    when = h("p", { class: "small" }, state(stage),
      ` Unlocks ${unixDateTime(e.withdrawal_unlocks_at)}, lapses ${unixDateTime(e.withdrawal_lapses_at)}.`);
  }
  box.replaceChildren(
    h("div", { class: "card figure" }, h("h3", {}, "Escrow now"), h("p", { class: "big", id: "escrow-now" }, usd(e.escrow)),
      h("p", { class: "small", id: "escrow-debt" },
        `Debt ${usd(e.debt)} (reserve ${usd(e.debt_reserve)}), on chain at ${unixDateTime(e.chain_time)}.`)),
    h("div", { class: "card figure", id: "escrow-withdrawal" }, h("h3", {}, "Withdrawal requested"),
      h("p", { class: "big" }, pending ? usd(e.pending_withdrawal) : "None"), when),
    h("div", { class: "card figure" }, h("h3", {}, "Your wallet"), h("p", { class: "big", id: "escrow-wallet" }, usd(e.wallet_balance)),
      h("p", { class: "small" }, "of the payment token ", h("code", { title: e.token }, shortHex(e.token)),
        e.permit ? "; a deposit is one transaction, with a permit you sign." : "; a deposit approves the ledger first (two transactions).")),
  );
  $("withdraw-escrow").disabled = !e.withdrawable;
}

/** Runs one escrow action of a form, its button disabled meanwhile; an error shows in the form.
 * The escrow is read again afterwards. */
async function escrowAction(event, run) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = form.querySelector("p.error");
  const status = form.querySelector(".escrow-status");
  const button = form.querySelector("button[type=submit]");
  error.textContent = "";
  status.replaceChildren();
  button.disabled = true;
  try {
    if (!session || !escrowNow) throw new Error("The escrow could not be read: open the brand again.");
    await run(new FormData(form), status);
    form.reset();
  } catch (err) {
    error.textContent = err.message;
  } finally {
    button.disabled = false;
    if (session) await Promise.all([escrow(session.key), account(session.brand)]);
  }
}

/** The amount field as token base units (BigInt), above 0. */
function amountOf(data) {
  const units = toUnits(data.get("amount"));
  if (units === null || units === 0n) throw new Error(`Give an amount in ${TOKEN.symbol} above 0 (up to ${TOKEN.decimals} decimals).`);
  return units;
}

/** The brand's wallet on the ledger's chain, its account the brand's address. */
async function brandWallet() {
  const account = await brandAccount(session.brand);
  await ensureChain(escrowNow.chain_id);
  return account;
}

/** Posts an escrow route; a refusal says what was refused. */
async function escrowRoute(path, body, what) {
  try {
    return await api(path, { method: "POST", key: session.key, body });
  } catch (err) {
    throw new Error(`The bridge refused the ${what}: ${err.message}`);
  }
}

async function deposit(data, status) {
  const units = amountOf(data);
  if (units > BigInt(escrowNow.wallet_balance)) {
    throw new Error(`Your wallet holds ${usd(escrowNow.wallet_balance)} of the payment token, less than ${usd(units)}.`);
  }
  const account = await brandWallet();
  let answer = await escrowRoute("/v1/brand/escrow/deposit", { amount: String(units) }, "deposit");
  if (answer.permit) {
    notify(`Asking your wallet to sign a permit for the ledger to take ${usd(units)}`);
    let signature;
    try {
      signature = await wallet().request({ method: "eth_signTypedData_v4", params: [account, JSON.stringify(answer.permit)] });
    } catch (err) {
      notify("");
      throw new Error(walletReason(err, "the permit"));
    }
    const permit = { deadline: answer.permit.message.deadline, signature };
    answer = await escrowRoute("/v1/brand/escrow/deposit", { amount: String(units), permit }, "deposit");
  }
  const txHash = await sendAll(account, answer.transactions, status, "deposit");
  status.replaceChildren(state("deposited"), ` ${usd(units)} in `, proof({ tx_hash: txHash }, "deposit"));
  notify(`Deposited ${usd(units)}: debt is repaid first, the rest is escrow.`);
}

async function requestWithdrawal(data, status) {
  const units = amountOf(data);
  const account = await brandWallet();
  const answer = await escrowRoute("/v1/brand/escrow/withdrawal-request", { amount: String(units) }, "withdrawal request");
  const txHash = await sendAll(account, answer.transactions, status, "withdrawal request");
  status.replaceChildren(state("requested"), ` ${usd(units)} in `, proof({ tx_hash: txHash }, "withdrawal request"));
  notify(`Requested a withdrawal of ${usd(units)}: it unlocks after the notice period.`);
}

async function withdraw(_data, status) {
  const amount = escrowNow.pending_withdrawal;
  const account = await brandWallet();
  const answer = await escrowRoute("/v1/brand/escrow/withdrawal", undefined, "withdrawal");
  const txHash = await sendAll(account, answer.transactions, status, "withdrawal");
  status.replaceChildren(state("withdrawn"), ` ${usd(amount)} in `, proof({ tx_hash: txHash }, "withdrawal"));
  notify(`Withdrew ${usd(amount)} from your escrow to your wallet.`);
}

/** Sends the transactions in order from the brand's wallet, each once the one before is mined;
 * the last one's hash. */
async function sendAll(account, transactions, status, what) {
  let txHash = null;
  for (const [i, tx] of transactions.entries()) {
    const step = transactions.length > 1 ? ` (${i + 1} of ${transactions.length})` : "";
    status.replaceChildren(`Asking your wallet to send the ${what}${step}…`);
    txHash = await sendTransaction(account, tx);
    status.replaceChildren(`Waiting for the ${what}${step} to be mined: `, proof({ tx_hash: txHash }, what));
    await mined(txHash, what);
  }
  return txHash;
}

/** ``eth_sendTransaction`` of ``{to, data}`` from ``account``; its hash. */
async function sendTransaction(account, tx) {
  try {
    return await wallet().request({ method: "eth_sendTransaction", params: [{ from: account, to: tx.to, data: tx.data }] });
  } catch (err) {
    throw new Error(err && (err.code === 4001 || err.code === "ACTION_REJECTED")
      ? "You declined the transaction in your wallet."
      : `Your wallet did not send the transaction: ${err?.message || err}`);
  }
}

/** Waits (through the wallet) for the transaction's receipt; an error when it reverted. */
async function mined(txHash, what) {
  for (let waited = 0; waited < MINED_TIMEOUT_S; waited += 1) {
    const receipt = await wallet().request({ method: "eth_getTransactionReceipt", params: [txHash] });
    if (receipt) {
      if (Number(receipt.status) !== 1) throw new Error(`The ledger refused the ${what}: transaction ${txHash} reverted.`);
      return receipt;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(`The ${what} (${txHash}) was not mined in ${MINED_TIMEOUT_S} s; your wallet tells what became of it.`);
}

// ---------------------------------------------------------------- spending limits

async function limits(key) {
  const box = $("brand-limits");
  box.replaceChildren(loading("Loading spending limits…"));
  let l;
  try {
    l = await api("/v1/brand/limits", { key });
  } catch (err) {
    box.replaceChildren(errorText(`Could not load the spending limits: ${err.message}`));
    return;
  }
  const raise = l.pending_raise;
  box.replaceChildren(
    h("div", { class: "card figure" }, h("h3", {}, "Limit per usage"), h("p", { class: "big", id: "limit-usage" }, usd(l.per_usage)),
      h("p", { class: "small" }, "Most one usage (price × quantity) may cost.")),
    h("div", { class: "card figure" }, h("h3", {}, "Limit per period"), h("p", { class: "big", id: "limit-period" }, usd(l.per_period)),
      h("p", { class: "small", id: "limit-spent" },
        `Spent since ${unixDateTime(l.period_start)}: ${usd(l.spent_in_period)}; ${usd(l.remaining_in_period)} left.`)),
    h("div", { class: "card figure", id: "limit-raise" }, h("h3", {}, "Raise waiting"),
      raise
        ? [h("p", { class: "big" }, usd(raise.per_usage)),
          h("p", { class: "small" }, `per usage and ${usd(raise.per_period)} per period from ${unixDateTime(raise.effective_at)}.`)]
        : h("p", {}, "None: the limits above hold."),
      h("p", { class: "small", id: "limit-attester" }, l.attester
        ? ["Your usages are attested by your own attester ", h("code", {}, l.attester), "."]
        : "Your usages are attested by the bridge.")),
  );
}

// ---------------------------------------------------------------- offers

async function offers(brand, key) {
  const box = $("brand-offers");
  box.replaceChildren(loading("Loading offers…"));
  let page;
  try {
    page = await api("/v1/offers", { key });
  } catch (err) {
    box.replaceChildren(errorText(`Could not load the offers: ${err.message}`));
    return;
  }
  const rows = page.items.map((offer) => {
    const status = h("p", { class: "offer-status", "aria-live": "polite" });
    const accept = h("button", { type: "button", class: "accept", disabled: offer.expired, "aria-label": `Accept the offer of twin ${offer.twin_id}, version ${offer.version}` }, "Accept");
    const decline = h("button", { type: "button", class: "decline secondary", disabled: !offer.decline, "aria-label": `Decline the offer of twin ${offer.twin_id}, version ${offer.version}` }, "Decline");
    const buttons = [accept, decline];
    accept.addEventListener("click", () => decide(buttons, status, () => acceptOffer(offer, brand, key, status)));
    decline.addEventListener("click", () => decide(buttons, status, () => declineOffer(offer, brand, status)));
    return [
      `#${offer.twin_id}`,
      String(offer.version),
      pricesOf(offer.prices),
      `${offer.valid_from.startsWith("1970-01-01") ? "on acceptance" : unixDate(offer.valid_from)} → ${unixDate(offer.valid_until)}`,
      offer.max_uses ? `at most ${offer.max_uses}` : "no cap",
      h("code", { title: offer.terms_hash }, shortHex(offer.terms_hash)),
      h("div", { class: "offer-actions" }, offer.expired ? state("expired") : null, accept, decline, status),
    ];
  });
  box.replaceChildren(table("One offer per twin, by twin", [{ label: "Twin" }, { label: "Version", num: true },
    { label: "Prices per use" }, { label: "Valid" }, { label: "Cap" }, { label: "Terms hash" }, { label: "Decision" }],
  rows, "No offer waits for your acceptance."));
}

/** Runs one decision on an offer with its buttons disabled; an error shows under them and gives
 * the buttons back. */
async function decide(buttons, status, run) {
  for (const button of buttons) button.disabled = true;
  status.replaceChildren();
  try {
    await run();
  } catch (err) {
    status.replaceChildren(errorText(err));
    for (const button of buttons) button.disabled = false;
  }
}

/** The wallet's account, which must be the brand's address (the ledger takes its decision only). */
async function brandAccount(brand) {
  const provider = wallet();
  let accounts;
  try {
    accounts = await provider.request({ method: "eth_requestAccounts" });
  } catch (err) {
    throw new Error(walletReason(err, "the connection"));
  }
  const account = accounts && accounts[0];
  if (!account || account.toLowerCase() !== brand.address.toLowerCase()) {
    throw new Error(`Connect the wallet of the brand's address ${brand.address}; this one is ${account || "none"}.`);
  }
  return account;
}

async function acceptOffer(offer, brand, key, status) {
  const account = await brandAccount(brand);
  const answer = await api(offer.accept, { method: "POST", key });
  await ensureChain(answer.typed_data.domain.chainId);
  notify(`Asking your wallet to sign the acceptance of twin #${offer.twin_id}, version ${offer.version}`);
  let signature;
  try {
    signature = await wallet().request({ method: "eth_signTypedData_v4", params: [account, JSON.stringify(answer.typed_data)] });
  } catch (err) {
    notify("");
    throw new Error(walletReason(err, "the signature"));
  }
  let action;
  try {
    action = await api(offer.accept, { method: "POST", key, body: { message: answer.typed_data.message, signature } });
  } catch (err) {
    notify("");
    throw new Error(`The bridge refused the acceptance: ${err.message}`);
  }
  const show = (a) => status.replaceChildren("Acceptance ", state(a.status));
  show(action);
  const done = await pollAction(action, show);
  if (done.status === "failed") throw new Error(`The ledger refused the acceptance: ${done.error}`);
  status.replaceChildren(state("accepted"), " in ", proof({ tx_hash: done.tx_hash, block_number: done.block_number }, `acceptance of twin ${offer.twin_id}`));
  notify(`Accepted the offer of twin #${offer.twin_id} (version ${offer.version}): its usages are payable from now on.`);
}

async function declineOffer(offer, brand, status) {
  const account = await brandAccount(brand);
  const types = await api("/v1/owner-actions/types");
  await ensureChain(types.domain.chainId);
  const txHash = await sendTransaction(account, offer.decline);
  status.replaceChildren(state("declined"), " in ", proof({ tx_hash: txHash }, `refusal of twin ${offer.twin_id}`));
  notify(`Declined the offer of twin #${offer.twin_id} (version ${offer.version}).`);
}
