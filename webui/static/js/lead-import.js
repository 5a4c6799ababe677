// The lead import page while its background job runs: progress.js moves the bar and writes the
// job's status into #job-state; once that is no longer "running", reload to show the result.
const state = document.getElementById("job-state");
if (state && state.textContent.trim() === "running") {
  new MutationObserver(() => {
    if (state.textContent.trim() !== "running") window.location.reload();
  }).observe(state, { childList: true, characterData: true, subtree: true });
}
