// Brand view: the API key (session storage only) opens the brand's escrow, debt, spending limits
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
  unixDate,
  unixDateTime,
  usd,
  wallet,
  walletReason,
  words,
} from "./lib.js";

const STORAGE = "twin-bridge.api-key";
const PAGE = 20;
const $ = (id) => document.getElementById(id);

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
  await Promise.all([account(brand), limits(key), offers(brand, key), licenses(brand), events(key)]);
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
      h("span", { title: e.detail || e.error || "" }, state(e.status), e.reason ? ` ${words(e.reason)}` : null),
      usd(e.amount),
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
      `${offer.valid_from ? unixDate(offer.valid_from) : "on acceptance"} → ${unixDate(offer.valid_until)}`,
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
  let txHash;
  try {
    txHash = await wallet().request({ method: "eth_sendTransaction", params: [{ from: account, to: offer.decline.to, data: offer.decline.data }] });
  } catch (err) {
    throw new Error(err && (err.code === 4001 || err.code === "ACTION_REJECTED")
      ? "You declined the transaction in your wallet."
      : `Your wallet did not send the transaction: ${err?.message || err}`);
  }
  status.replaceChildren(state("declined"), " in ", proof({ tx_hash: txHash }, `refusal of twin ${offer.twin_id}`));
  notify(`Declined the offer of twin #${offer.twin_id} (version ${offer.version}).`);
}
