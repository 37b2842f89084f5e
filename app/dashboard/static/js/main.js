// Boot: the key prompt, then the tabs; each view loads its data when it is first shown.
import { api, key, showError } from "./api.js";
import { loadSegments, initSegments } from "./segments.js";
import { loadModels, initModels } from "./models.js";
import { initCustomer } from "./customer.js";
import { startLive, stopLive } from "./live.js";

const views = {
  segments: { load: loadSegments },
  models: { load: loadModels },
  customer: { load: async () => document.getElementById("customer-id").focus() },
  live: { load: startLive, leave: stopLive },
};
let current = null;

async function show(name) {
  if (current && current !== name && views[current].leave) views[current].leave();
  current = name;
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const selected = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
  }
  showError(null);
  try {
    await views[name].load();
  } catch (error) {
    handle(error);
  }
}

export function handle(error) {
  if (error && (error.status === 401 || error.status === 403)) {
    signOut("The key was refused: enter an admin key again.");
    return;
  }
  showError(error);
}

function signOut(message) {
  stopLive();
  key.forget();
  document.getElementById("app").hidden = true;
  document.getElementById("forget-key").hidden = true;
  document.getElementById("model-badge").textContent = "";
  document.getElementById("key-prompt").hidden = false;
  document.getElementById("key-error").textContent = message || "";
  document.getElementById("key-input").focus();
}

async function signIn() {
  document.getElementById("key-prompt").hidden = true;
  document.getElementById("app").hidden = false;
  document.getElementById("forget-key").hidden = false;
  await show("segments");
}

function initTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => show(tab.id.slice(4)));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      show(next.id.slice(4));
    });
  });
}

function initKeyForm() {
  document.getElementById("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("key-input");
    const candidate = input.value.trim();
    const message = document.getElementById("key-error");
    message.textContent = "";
    try {
      await api("/models", { candidate }); // admin scope: the dashboard needs nothing less
    } catch (error) {
      message.textContent =
        error.status === 401 || error.status === 403
          ? "This key is not an admin key of this service."
          : `The service did not answer: ${error.message}`;
      return;
    }
    input.value = "";
    key.set(candidate);
    await signIn();
  });
  document.getElementById("forget-key").addEventListener("click", () => signOut(""));
}

initTabs();
initKeyForm();
initSegments(handle);
initModels(handle);
initCustomer(handle);
if (key.get()) signIn();
else document.getElementById("key-input").focus();
