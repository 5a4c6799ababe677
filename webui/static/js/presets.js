// Fills the server fields from the chosen provider preset (the server does the same for blank
// fields on save, so the form works without JavaScript too).
const help = document.getElementById("preset-help");
const provider = document.getElementById("f-provider");
if (help && provider) {
  const presets = JSON.parse(help.dataset.presets);
  const fields = ["smtp_host", "smtp_port", "smtp_security", "imap_host", "imap_port", "imap_security"];
  const apply = (fill) => {
    const preset = presets[provider.value];
    help.textContent = preset ? preset.help : "Enter your provider's SMTP and IMAP settings.";
    if (!preset || !fill) return;
    for (const name of fields) {
      const input = document.getElementById("f-" + name);
      if (input) input.value = preset[name];
    }
    const copy = document.querySelector("input[name=save_sent_copy]");
    if (copy) copy.checked = !preset.saves_sent;
  };
  provider.addEventListener("change", () => apply(true));
  apply(!document.getElementById("f-smtp_host").value);
}
