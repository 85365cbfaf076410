// berth dashboard: progressive enhancement only. Every page works without
// this script except the live log view. Nothing here builds HTML from
// strings: log lines are inserted as text.
"use strict";

// While an app deploys, its overview refreshes itself until it settles.
(function () {
  if (document.querySelector("#app-status.deploying")) {
    setTimeout(() => window.location.reload(), 3000);
  }
})();

(function () {
  const view = document.getElementById("log");
  if (!view) return;
  const filter = document.getElementById("log-filter");
  const pauseBtn = document.getElementById("log-pause");
  const state = document.getElementById("log-state");
  const maxLines = 2000;
  let source = null;
  let paused = false;
  let held = [];

  // "2026-11-23T09:00:00.000000Z web.1[stdout]: text"
  const lineRe = /^(\S+) ([A-Za-z0-9_.-]+)\[(\w+)\]: (.*)$/;

  function render(text) {
    const row = document.createElement("span");
    row.className = "line";
    const m = lineRe.exec(text);
    if (m) {
      const ts = document.createElement("span");
      ts.className = "ts";
      ts.textContent = m[1].replace("T", " ").replace(/\.\d+Z$/, "Z") + " ";
      const proc = document.createElement("span");
      proc.className = "proc" + (m[2] === "berth" ? " berth" : "");
      proc.textContent = m[2] + (m[3] === "stderr" ? "[err]" : "") + " ";
      const body = document.createElement("span");
      body.className = "text" + (m[3] === "stderr" ? " err" : "");
      body.textContent = m[4];
      row.append(ts, proc, body);
    } else {
      row.textContent = text;
    }
    return row;
  }

  function append(lines) {
    const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 30;
    const frag = document.createDocumentFragment();
    for (const l of lines) frag.append(render(l));
    view.append(frag);
    while (view.childElementCount > maxLines) view.firstElementChild.remove();
    if (atBottom) view.scrollTop = view.scrollHeight;
  }

  function setState(text) { state.textContent = text; }

  function connect() {
    if (source) source.close();
    view.replaceChildren();
    held = [];
    const type = filter ? filter.value : "";
    let url = view.dataset.stream;
    if (type) url += "?type=" + encodeURIComponent(type);
    source = new EventSource(url);
    source.onopen = () => setState(paused ? "paused" : "live");
    source.onmessage = (e) => {
      if (paused) {
        held.push(e.data);
        setState("paused · " + held.length + " new line(s)");
      } else {
        append([e.data]);
      }
    };
    source.addEventListener("end", (e) => { setState(e.data); source.close(); });
    source.onerror = () => setState("reconnecting…");
  }

  if (filter) {
    filter.addEventListener("change", () => {
      const u = new URL(window.location.href);
      if (filter.value) u.searchParams.set("type", filter.value); else u.searchParams.delete("type");
      history.replaceState(null, "", u);
      connect();
    });
  }
  pauseBtn.hidden = false;
  pauseBtn.addEventListener("click", () => {
    paused = !paused;
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      append(held);
      held = [];
      setState("live");
    } else {
      setState("paused");
    }
  });
  connect();
})();
