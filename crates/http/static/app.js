// Console behaviour, kept small: confirmations for destructive forms and live updates of the
// fleet view. Pages work without it; nothing here builds HTML from strings.
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function actionForm(path, label, csrf, confirmText) {
  const form = document.createElement("form");
  form.method = "post";
  form.action = path;
  form.className = "inline";
  form.setAttribute("data-confirm", confirmText);
  const input = document.createElement("input");
  input.type = "hidden";
  input.name = "csrf";
  input.value = csrf;
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = label;
  form.append(input, button);
  return form;
}

async function refresh() {
  const table = document.getElementById("agents");
  if (!table) return;
  const filter = table.getAttribute("data-filter");
  const csrf = table.getAttribute("data-csrf");
  const response = await fetch("/console/fleet.json" + (filter ? "?status=" + encodeURIComponent(filter) : ""), {
    credentials: "same-origin",
  });
  if (!response.ok) return;
  const fleet = await response.json();
  for (const [name, n] of Object.entries(fleet.counts)) {
    const el = document.querySelector('[data-count="' + name + '"]');
    if (el) el.textContent = String(n);
  }
  for (const key of ["budget", "tick", "target", "leader", "redeploy", "rollout"]) {
    const el = document.getElementById(key);
    if (el) el.textContent = fleet[key];
  }
  const replicas = document.getElementById("replicas");
  if (replicas && fleet.replicas) {
    replicas.replaceChildren(
      ...fleet.replicas.map((line) => {
        const item = document.createElement("li");
        item.textContent = line;
        return item;
      }),
    );
  }
  for (const r of fleet.runtimes || []) {
    for (const [field, value] of Object.entries(r)) {
      const el = document.querySelector('[data-stock="' + CSS.escape(r.key + ":" + field) + '"]');
      if (el) el.textContent = String(value);
    }
  }
  const tick = document.getElementById("tick");
  if (tick) tick.title = fleet.tick_exact;
  const body = document.createElement("tbody");
  for (const a of fleet.agents) {
    const row = document.createElement("tr");
    row.setAttribute("data-id", a.id);
    const link = document.createElement("a");
    link.href = "/agents/" + encodeURIComponent(a.id);
    link.textContent = a.id;
    cell(row, "").appendChild(link);
    const status = document.createElement("span");
    status.className = "status " + a.status;
    status.textContent = a.status;
    cell(row, "").appendChild(status);
    cell(row, a.age);
    cell(row, a.deployment);
    cell(row, a.health);
    cell(row, a.image);
    cell(row, a.agent_name);
    const invite = cell(row, "");
    if (a.invite_url) {
      const link = document.createElement("a");
      link.href = a.invite_url;
      link.textContent = "invite";
      invite.appendChild(link);
    }
    const actions = cell(row, "");
    if (a.status === "crashed") {
      actions.appendChild(actionForm("/console/dismiss/" + encodeURIComponent(a.id), "Dismiss", csrf, "Dismiss crashed agent " + a.id + "?"));
    } else if (a.status !== "deleting" && a.status !== "claiming") {
      actions.appendChild(actionForm("/console/kill/" + encodeURIComponent(a.id), "Kill", csrf, "Kill agent " + a.id + "?"));
    }
    body.appendChild(row);
  }
  table.replaceChild(body, table.tBodies[0]);
}

// The chart's runtime: shown as soon as it is chosen (the button stays for pages without script).
document.addEventListener("change", (event) => {
  if (event.target.id === "chart-runtime") event.target.form.submit();
});

if (document.getElementById("agents")) {
  setInterval(() => refresh().catch(() => {}), 2000);
}
