// The dashboard's entry: hash routing between the model, brand and auditor views.
import { showAudit } from "./audit.js";
import { showBrand } from "./brand.js";
import { TOKEN, loadToken } from "./lib.js";
import { initModel } from "./model.js";

const VIEWS = ["model", "brand", "audit"];
const started = new Set();

function route() {
  const name = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "model";
  for (const view of VIEWS) {
    document.getElementById(`view-${view}`).hidden = view !== name;
    const tab = document.querySelector(`[data-view="${view}"]`);
    if (view === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.getElementById("notice").textContent = "";
  document.title = `Twin Bridge: ${{ model: "model", brand: "brand", audit: "auditor" }[name]} view`;
  if (!started.has(name)) {
    started.add(name);
    ({ model: initModel, brand: showBrand, audit: showAudit })[name]();
  }
}

window.addEventListener("hashchange", () => {
  route();
  document.getElementById("main").focus();
});
// Amounts are shown in the payment token's symbol and decimals, read from the bridge first.
loadToken().then(route, (err) => {
  TOKEN.symbol = "base units";
  TOKEN.decimals = 0;
  route();
  document.getElementById("notice").textContent =
    `The payment token could not be read (${err.message}); amounts are in base units.`;
});
