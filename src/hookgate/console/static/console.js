// Hookgate console: live rows (EventSource), actions (fetch + CSRF header), copy buttons.
// Written for this project; no third-party code.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf || "";

  function say(text) {
    const box = document.getElementById("live-status");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  function time(seconds) {
    return new Date(seconds * 1000).toISOString().slice(11, 19);
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (className) td.className = className;
    return td;
  }

  // One stream per element; it is marked data-state="live" once the gateway has subscribed
  // it, and a closed stream (session expired, gateway gone) is said so.
  function listen(element, url, onEvent) {
    const source = new EventSource(url);
    source.addEventListener("subscribed", () => {
      element.dataset.state = "live";
      say("");
    });
    source.onmessage = (message) => {
      say("");
      onEvent(JSON.parse(message.data));
    };
    source.onerror = () => {
      element.dataset.state = "lost";
      if (source.readyState === EventSource.CLOSED) {
        say("Live updates stopped: your session may have expired or the gateway is unreachable. Reload the page.");
      } else {
        say("Live updates interrupted; reconnecting…");
      }
    };
    return source;
  }

  function liveRow(event) {
    const tr = document.createElement("tr");
    tr.className = "fresh " + event.kind;
    tr.appendChild(cell(time(event.at)));
    if (event.kind === "request") {
      tr.appendChild(cell("request " + event.method + " " + event.path));
      tr.appendChild(cell(event.status, event.status >= 400 ? "bad" : "good"));
      tr.appendChild(cell(Number(event.ms).toFixed(1) + " ms"));
      tr.appendChild(cell(event.requestId));
    } else if (event.kind === "handshake") {
      tr.appendChild(cell("handshake " + event.provider));
      tr.appendChild(cell(event.outcome + " (" + event.status + ")",
        event.outcome === "answered" ? "good" : "bad"));
      tr.appendChild(cell(""));
      tr.appendChild(cell(event.requestId));
    } else {
      const what = cell("");
      const link = document.createElement("a");
      link.href = "/console/deliveries/" + encodeURIComponent(event.deliveryId);
      link.textContent = "delivery " + event.deliveryId.slice(0, 12) + "… #" + event.attempt;
      what.appendChild(link);
      tr.appendChild(what);
      tr.appendChild(cell(event.outcome + (event.status ? " (" + event.status + ")" : ""),
        event.outcome === "done" ? "good" : "bad"));
      tr.appendChild(cell(Math.round(event.ms) + " ms"));
      tr.appendChild(cell(event.error || event.requestId));
    }
    return tr;
  }

  const live = document.getElementById("live");
  if (live) {
    listen(live, live.dataset.live, (event) => {
      live.insertBefore(liveRow(event), live.firstChild);
      while (live.rows.length > 200) live.deleteRow(-1);
    });
  }

  // The delivery page reloads when its delivery has been attempted again, and keeps
  // looking while it is queued or being delivered (an event can precede the stored result).
  const watched = document.getElementById("delivery-live");
  if (watched) {
    listen(watched, watched.dataset.live, (event) => {
      if (event.kind === "delivery" && event.deliveryId === watched.dataset.delivery) {
        setTimeout(() => window.location.reload(), 250);
      }
    });
    if (watched.dataset.pending === "true") {
      setTimeout(() => window.location.reload(), 1500);
    }
  }

  // The flows table refreshes its numbers when something happens, at most every 2 s.
  const flows = document.getElementById("flows");
  if (flows) {
    let pending = false;
    const refresh = () => {
      pending = false;
      fetch(flows.dataset.stats, { headers: { accept: "application/json" } })
        .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
        .then((data) => {
          for (const item of data.items) {
            const row = flows.querySelector('tr[data-flow="' + item.id + '"]');
            if (!row) continue;
            for (const field of row.querySelectorAll("[data-field]")) {
              field.textContent = item[field.dataset.field];
            }
          }
        })
        .catch(() => say("Could not refresh the numbers; reload the page."));
    };
    listen(flows, flows.dataset.live, () => {
      if (!pending) {
        pending = true;
        setTimeout(refresh, 2000);
      }
    });
    setInterval(refresh, 10000);
  }

  // A flow's charts are redrawn by the gateway every 10 s (the minute in progress moves),
  // and its numbers (queue, requests/min, error rate) are read again with them.
  const charts = document.getElementById("charts");
  const facts = document.getElementById("flow-facts");
  if (charts && facts) {
    setInterval(() => {
      fetch(charts.dataset.charts, { headers: { accept: "text/html" } })
        .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
        .then((html) => { charts.innerHTML = html; })
        .then(() => fetch(facts.dataset.stats, { headers: { accept: "application/json" } }))
        .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
        .then((data) => {
          const item = data.items.find((flow) => flow.id === facts.dataset.flow);
          if (!item) return;
          for (const field of facts.querySelectorAll("[data-field]")) {
            field.textContent = item[field.dataset.field];
          }
        })
        .catch(() => say("Could not refresh the charts; reload the page."));
    }, 10000);
  }

  // Forms marked data-fetch are sent with fetch and the CSRF token in a header.
  for (const form of document.querySelectorAll("form[data-fetch]")) {
    form.addEventListener("submit", (submit) => {
      submit.preventDefault();
      fetch(form.action, { method: "POST", headers: { "x-csrf-token": csrf } })
        .then((response) => response.json().then((data) => [response.ok, data]))
        .then(([ok, data]) => {
          say(ok ? data.message : data.error);
          if (ok && watched) watched.dataset.pending = "true";
        })
        .catch(() => say("The gateway did not answer; try again."));
    });
  }

  for (const element of document.querySelectorAll("[data-confirm]")) {
    const target = element.tagName === "FORM" ? "submit" : "click";
    element.addEventListener(target, (event) => {
      if (!window.confirm(element.dataset.confirm)) event.preventDefault();
    });
  }

  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", () => {
      navigator.clipboard.writeText(button.dataset.copy).then(
        () => { button.textContent = "Copied"; },
        () => { button.textContent = "Select and copy"; }
      );
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }

  for (const all of document.querySelectorAll("[data-select-all]")) {
    all.addEventListener("change", () => {
      for (const box of all.form.querySelectorAll('input[name="id"]')) box.checked = all.checked;
    });
  }
})();
