// Polls a background job's progress (GET, same origin, session cookie) until it is done.
const bar = document.getElementById("job-progress");
const label = document.getElementById("job-status");
if (bar && bar.dataset.jobUrl) {
  const poll = async () => {
    const response = await fetch(bar.dataset.jobUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const job = await response.json();
    const finished = job.done + job.failed;
    bar.max = job.total;
    bar.value = finished;
    if (label) label.textContent = `${finished} / ${job.total}` + (job.failed ? ` (${job.failed} failed)` : "");
    const state = document.getElementById("job-state");
    if (state) state.textContent = job.status;
    if (job.status === "running") setTimeout(poll, 700);
  };
  poll();
}
