// Live preview on the campaign page: choosing another lead fetches
// GET /api/v1/campaigns/{id}/preview?lead_id= (same origin, session cookie) and redraws the panel
// without a reload. Email content is user-provided: it is only ever set as textContent.
// Without JavaScript the lead form is a plain GET form and the server renders the preview.
const panel = document.getElementById("campaign-preview");
const select = document.getElementById("preview-lead");
const leadForm = document.getElementById("preview-lead-form");
const status = document.getElementById("preview-status");
const senderFields = new Set(((panel && panel.dataset.senderFields) || "").split(" "));

const UNITS = [["day", 1440], ["hour", 60]];

function delayText(position, minutes) {
  const after = position === 0 ? "launch" : "the previous email";
  if (!minutes) return position === 0 ? "at launch" : "right after the previous email";
  let value = minutes;
  let unit = "minute";
  for (const [name, size] of UNITS) {
    if (minutes % size === 0) {
      value = minutes / size;
      unit = name;
      break;
    }
  }
  return `${value} ${unit}${value === 1 ? "" : "s"} after ${after}`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function variantNode(variant) {
  const article = el("article", "preview-variant");
  article.dataset.variant = variant.label;
  article.append(el("h4", "", `Variant ${variant.label}`));
  if (variant.missing && variant.missing.length) {
    const names = variant.missing.join(", ");
    const fromLead = variant.missing.some((name) => !senderFields.has(name));
    article.append(el("p", "alert error preview-missing", fromLead
      ? `This lead has no value for ${names}, and the template gives no fallback. ` +
        "Add one (like {{first_name|there}}), fill in the lead's field, or remove the lead."
      : `No value for ${names}: it comes from the sending mailbox or the sender identity, and the template ` +
        "gives no fallback. Add a mailbox to the pool, fill in the value, or add a fallback."));
    return article;
  }
  const subject = el("p", "preview-subject");
  subject.append(el("span", "muted", "Subject:"), " ", el("strong", "", variant.subject));
  article.append(subject, el("pre", "preview-body", variant.body));
  return article;
}

function render(steps) {
  const nodes = steps.map((step) => {
    const box = el("div", "preview-step");
    box.dataset.position = String(step.position);
    const title = el("h3", "", `Step ${step.position + 1} `);
    title.append(el("span", "muted", `· ${delayText(step.position, step.delay_minutes)}`));
    box.append(title, ...step.variants.map(variantNode));
    return box;
  });
  if (!nodes.length) nodes.push(el("p", "muted preview-empty", "No steps saved yet."));
  panel.replaceChildren(...nodes);
}

function remember(leadId) {
  // keep the chosen lead across this page's own form posts (Save, enrol, launch, test send)
  panel.dataset.leadId = leadId;
  for (const input of document.querySelectorAll("input[name=preview_lead_id]")) input.value = leadId;
  const url = new URL(panel.dataset.pageUrl, window.location.href);
  url.searchParams.set("lead_id", leadId);
  url.hash = window.location.hash;
  window.history.replaceState(null, "", url);
}

let latest = 0;

async function load(leadId) {
  if (!leadId) return;
  const ticket = ++latest;
  panel.setAttribute("aria-busy", "true");
  status.textContent = "Loading…";
  try {
    const url = `${panel.dataset.previewUrl}?lead_id=${encodeURIComponent(leadId)}`;
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (ticket !== latest) return; // a newer choice is on its way
    if (!response.ok) {
      status.textContent = (body.error && body.error.message) || `The preview failed (${response.status}).`;
      return;
    }
    render(body.steps || []);
    remember(leadId);
    status.textContent = "";
  } catch (error) {
    if (ticket === latest) status.textContent = "The preview could not be loaded. Check the connection and try again.";
  } finally {
    if (ticket === latest) panel.removeAttribute("aria-busy");
  }
}

if (panel && select && status) {
  select.addEventListener("change", () => load(select.value));
  if (leadForm) {
    leadForm.addEventListener("submit", (event) => {
      event.preventDefault();
      load(select.value);
    });
  }
  // Back/forward may restore this page from the cache with an old preview: fetch it afresh.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) load(select.value);
  });
}
