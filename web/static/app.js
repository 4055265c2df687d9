// sandboxd web UI: plain JavaScript over the REST API; terminals with xterm.js.
(() => {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const KEY = "sandboxd.key";
  let key = sessionStorage.getItem(KEY) || "";
  let refreshTimer = null;
  let term = null, fit = null, socket = null, termSandbox = null, termSession = null;

  // api calls the REST API with the key; errors carry the server's message.
  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: "Bearer " + key } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    if (resp.status === 204) return null;
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const e = new Error((data.error && data.error.message) || resp.statusText);
      e.status = resp.status;
      throw e;
    }
    return data;
  }

  function showLogin(message) {
    stopRefresh();
    $("#app").hidden = true;
    $("#login").hidden = false;
    $("#key-forget").hidden = true;
    $("#whoami").textContent = "";
    $("#key-error").textContent = message || "";
    $("#key-input").focus();
  }

  async function showApp() {
    $("#login").hidden = true;
    $("#app").hidden = false;
    $("#key-forget").hidden = false;
    $("#whoami").textContent = "key " + key.slice(0, 8) + "…";
    await loadImages();
    await refresh();
    stopRefresh();
    refreshTimer = setInterval(refresh, 3000);
  }

  function stopRefresh() {
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = null;
  }

  $("#key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    key = $("#key-input").value.trim();
    try {
      await api("GET", "/v1/sandboxes?limit=1");
    } catch (e) {
      showLogin(e.status === 401 ? "That key is not valid." : e.message);
      return;
    }
    sessionStorage.setItem(KEY, key);
    $("#key-input").value = "";
    showApp();
  });

  $("#key-forget").addEventListener("click", () => {
    closeTerminal();
    sessionStorage.removeItem(KEY);
    key = "";
    showLogin();
  });

  async function loadImages() {
    const sel = $("#create-image");
    try {
      const list = await api("GET", "/v1/images");
      const names = new Set(list.buildable);
      list.images.forEach((i) => names.add(i.name));
      sel.replaceChildren(...[...names].sort().map((n) => new Option(n, n, n === "sandboxd/base:latest", n === "sandboxd/base:latest")));
    } catch (e) {
      sel.replaceChildren(new Option("sandboxd/base:latest"));
    }
  }

  function age(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.floor(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h";
    return Math.floor(s / 86400) + "d";
  }

  function button(label, cls, onClick) {
    const b = document.createElement("button");
    b.textContent = label;
    if (cls) b.className = cls;
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await onClick(); } catch (e) { $("#list-error").textContent = e.message; }
      b.disabled = false;
    });
    return b;
  }

  async function refresh() {
    let list;
    try {
      list = await api("GET", "/v1/sandboxes?limit=1000");
    } catch (e) {
      if (e.status === 401) { sessionStorage.removeItem(KEY); showLogin("The key was refused."); return; }
      $("#list-error").textContent = e.message;
      return;
    }
    $("#list-error").textContent = "";
    const rows = list.sandboxes.map((sb) => {
      const tr = document.createElement("tr");
      tr.dataset.id = sb.id;
      tr.dataset.state = sb.state;
      const cells = [sb.id, "", sb.image, age(sb.created_at), sb.cpus + " CPU · " + sb.memory_mb + " MiB"];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        if (i === 0) td.className = "id";
        if (i === 1) {
          const badge = document.createElement("span");
          badge.className = "state " + sb.state;
          badge.textContent = sb.state;
          if (sb.error) badge.title = sb.error;
          td.appendChild(badge);
        } else {
          td.textContent = text;
        }
        tr.appendChild(td);
      });
      const actions = document.createElement("td");
      actions.className = "actions";
      actions.appendChild(button("Terminal", "terminal-btn primary", () => openTerminal(sb.id)));
      if (sb.state === "running") {
        actions.appendChild(button("Stop", "stop-btn", async () => { await api("POST", "/v1/sandboxes/" + sb.id + "/stop"); await refresh(); }));
      } else if (sb.state === "stopped" || sb.state === "failed") {
        actions.appendChild(button("Start", "start-btn", async () => { await api("POST", "/v1/sandboxes/" + sb.id + "/start"); await refresh(); }));
      }
      actions.appendChild(button("Delete", "delete-btn danger", async () => {
        if (!confirm("Delete " + sb.id + " and its files?")) return;
        if (termSandbox === sb.id) closeTerminal();
        await api("DELETE", "/v1/sandboxes/" + sb.id);
        await refresh();
      }));
      tr.appendChild(actions);
      return tr;
    });
    $("#sandboxes tbody").replaceChildren(...rows);
    $("#empty").hidden = rows.length > 0;
    $("#count").textContent = rows.length ? "(" + rows.length + ")" : "";
  }

  $("#create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const btn = $("#create");
    btn.disabled = true;
    $("#create-error").textContent = "";
    try {
      await api("POST", "/v1/sandboxes", {
        image: $("#create-image").value,
        cpus: parseFloat($("#create-cpus").value) || 0,
        memory_mb: parseInt($("#create-memory").value, 10) || 0,
      });
      await refresh();
    } catch (e) {
      $("#create-error").textContent = e.message;
    }
    btn.disabled = false;
  });

  // openTerminal asks for a single-use ticket (a browser cannot put the key on
  // a WebSocket) and opens a shell in the sandbox.
  async function openTerminal(id) {
    closeTerminal();
    $("#terminal-panel").hidden = false;
    $("#terminal-title").textContent = "Terminal · " + id;
    $("#terminal-status").textContent = "connecting…";
    term = new Terminal({ cursorBlink: true, fontSize: 14, convertEol: false, scrollback: 5000 });
    fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open($("#terminal"));
    window.sandboxdTerminal = term; // for tests and the console
    fit.fit();
    termSandbox = id;
    const { ticket } = await api("POST", "/v1/sandboxes/" + id + "/pty/tickets");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = proto + "//" + location.host + "/v1/sandboxes/" + id + "/pty?ticket=" + encodeURIComponent(ticket) +
      "&cols=" + term.cols + "&rows=" + term.rows;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    socket = ws;
    const enc = new TextEncoder();
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") { term.write(new Uint8Array(ev.data)); return; }
      const m = JSON.parse(ev.data);
      if (m.type === "session") {
        termSession = m.id;
        $("#terminal-status").textContent = "session " + m.id;
      } else if (m.type === "exit") {
        term.write("\r\n\x1b[2m[process exited with code " + m.exit_code + "]\x1b[0m\r\n");
        $("#terminal-status").textContent = "exited (" + m.exit_code + ")";
        termSession = null;
      }
    };
    ws.onclose = () => {
      if (socket === ws && termSession) $("#terminal-status").textContent = "disconnected";
    };
    term.onData((d) => { if (ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d)); });
    term.onResize(({ cols, rows }) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "resize", cols, rows }));
    });
    term.focus();
  }

  function closeTerminal() {
    if (socket) socket.close();
    socket = null;
    if (term) term.dispose();
    term = null; fit = null; termSandbox = null; termSession = null;
    window.sandboxdTerminal = null;
    $("#terminal-panel").hidden = true;
  }

  $("#terminal-close").addEventListener("click", closeTerminal);
  $("#terminal-kill").addEventListener("click", async () => {
    if (termSandbox && termSession) {
      try { await api("DELETE", "/v1/sandboxes/" + termSandbox + "/pty/sessions/" + termSession); } catch (e) { /* already gone */ }
    }
    closeTerminal();
  });
  window.addEventListener("resize", () => { if (fit) fit.fit(); });

  if (key) showApp(); else showLogin();
})();
