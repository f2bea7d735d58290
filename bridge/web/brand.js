// Brand view: the API key (session storage only) opens the brand's escrow, debt, licensed twins
// with prices, and its recent usage events with their on-chain proof.
import { ApiError, api, errorText, h, isoDateTime, loading, proof, state, table, unixDate, usd } from "./lib.js";

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
  await Promise.all([account(brand), licenses(brand), events(key)]);
}

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
          v.prices.map((p) => h("div", {}, `${(p.usage_type || `type ${p.usage_type_code}`).replaceAll("_", " ")}: ${usd(p.price)}`)),
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
      e.usage_type.replaceAll("_", " "),
      String(e.quantity),
      isoDateTime(e.used_at),
      h("span", { title: e.reason || e.error || "" }, state(e.status), e.reason ? ` ${e.reason}` : null),
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
