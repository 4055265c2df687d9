// bothy web UI: plain JavaScript over the REST API; terminals with xterm.js.
(() => {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const KEY = "bothy.key";
  // The key is kept for the browser (every tab), until "Forget key".
  let key = localStorage.getItem(KEY) || "";
  let tab = "sandboxes";
  let refreshTimer = null;
  let term = null, fit = null, socket = null, termSandbox = null, termSession = null;
  let filesSandbox = null, filesDir = "/";
  let logAbort = null;
  const sandboxUsers = {};

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

  // syncRows puts freshly built rows into a table that is redrawn every few
  // seconds. Where the rows are the same ones (same data attributes, same
  // buttons), it keeps the old rows and their buttons, and swaps only the
  // cells whose content changed: a button is never replaced under a click.
  function syncRows(tbody, rows) {
    const old = [...tbody.children];
    const sig = (tr) => JSON.stringify({ ...tr.dataset }) + "|" +
      [...tr.children].filter((td) => td.classList.contains("actions")).map((td) => td.innerHTML).join("");
    if (old.length !== rows.length || rows.some((tr, i) => sig(tr) !== sig(old[i]))) {
      tbody.replaceChildren(...rows);
      return;
    }
    rows.forEach((tr, i) => {
      [...tr.children].forEach((td, j) => {
        const was = old[i].children[j];
        if (!td.classList.contains("actions") && was.outerHTML !== td.outerHTML) was.replaceWith(td);
      });
    });
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
    // The Keys tab is for admin keys only.
    api("GET", "/v1/keys").then(() => { $('[data-tab="keys"]').hidden = false; }, () => { $('[data-tab="keys"]').hidden = true; });
  }

  // Another tab set or forgot the key.
  window.addEventListener("storage", (ev) => {
    if (ev.key !== KEY) return;
    key = ev.newValue || "";
    if (key) showApp(); else { closeTerminal(); showLogin(); }
  });

  function showTab(name) {
    tab = name;
    document.querySelectorAll("#tabs [data-tab]").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.tab === name)));
    document.querySelectorAll(".tab").forEach((el) => { el.hidden = el.id !== "tab-" + name; });
    loadTab();
  }

  function loadTab() {
    if (tab === "snapshots") loadSnapshots();
    else if (tab === "apps") loadApps();
    else if (tab === "usage") loadUsage();
    else if (tab === "keys") loadKeys();
  }

  document.querySelectorAll("#tabs [data-tab]").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));

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
    localStorage.setItem(KEY, key);
    $("#key-input").value = "";
    showApp();
  });

  $("#key-forget").addEventListener("click", () => {
    closeTerminal();
    localStorage.removeItem(KEY);
    key = "";
    showLogin();
  });

  async function loadImages() {
    const sel = $("#create-image");
    try {
      const list = await api("GET", "/v1/images");
      const names = new Set(list.buildable);
      list.images.forEach((i) => names.add(i.name));
      sel.replaceChildren(...[...names].sort().map((n) => new Option(n, n, n === "bothy/base:latest", n === "bothy/base:latest")));
    } catch (e) {
      sel.replaceChildren(new Option("bothy/base:latest"));
    }
  }

  function age(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.floor(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h";
    return Math.floor(s / 86400) + "d";
  }

  // button runs onClick, disabled meanwhile; a failure shows in errSel (the
  // sandbox list's error line unless another is named), cleared first.
  function button(label, cls, onClick, errSel = "#list-error") {
    const b = document.createElement("button");
    b.textContent = label;
    if (cls) b.className = cls;
    b.addEventListener("click", async () => {
      b.disabled = true;
      if (errSel !== "#list-error") $(errSel).textContent = "";
      try { await onClick(); } catch (e) { $(errSel).textContent = e.message; }
      b.disabled = false;
    });
    return b;
  }

  async function refresh() {
    let list;
    try {
      list = await api("GET", "/v1/sandboxes?limit=1000");
    } catch (e) {
      if (e.status === 401) { localStorage.removeItem(KEY); showLogin("The key was refused."); return; }
      $("#list-error").textContent = e.message;
      return;
    }
    $("#list-error").textContent = "";
    list.sandboxes.forEach((sb) => { sandboxUsers[sb.id] = sb; });
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
        actions.appendChild(button("Pause", "pause-btn", async () => { await api("POST", "/v1/sandboxes/" + sb.id + "/pause"); await refresh(); }));
        actions.appendChild(button("Stop", "stop-btn", async () => { await api("POST", "/v1/sandboxes/" + sb.id + "/stop"); await refresh(); }));
      } else if (sb.state === "paused") {
        actions.appendChild(button("Resume", "resume-btn", async () => { await api("POST", "/v1/sandboxes/" + sb.id + "/resume"); await refresh(); }));
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
    syncRows($("#sandboxes tbody"), rows);
    fillSandboxSelect(list.sandboxes);
    if (filesSandbox) { loadProcs(); loadPorts(); }
    if (tab !== "sandboxes") loadTab();
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
    $("#workbench").hidden = false;
    $("#terminal-title").textContent = "Terminal · " + id;
    $("#terminal-status").textContent = "connecting…";
    term = new Terminal({ cursorBlink: true, fontSize: 14, convertEol: false, scrollback: 5000 });
    fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open($("#terminal"));
    window.bothyTerminal = term; // for tests and the console
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
    filesSandbox = id;
    loadFiles(homeOf(id));
    loadProcs();
    loadPorts();
  }

  function closeTerminal() {
    if (socket) socket.close();
    socket = null;
    if (term) term.dispose();
    term = null; fit = null; termSandbox = null; termSession = null;
    window.bothyTerminal = null;
    filesSandbox = null;
    closeLog();
    $("#viewer").hidden = true;
    $("#workbench").hidden = true;
  }

  // The file browser of the open sandbox.
  function homeOf(id) {
    const sb = sandboxUsers[id] || {};
    if (sb.workdir) return sb.workdir;
    return sb.user && sb.user !== "root" ? "/home/" + sb.user : "/root";
  }

  function filesURL(route, path, extra) {
    return "/v1/sandboxes/" + filesSandbox + route + "?path=" + encodeURIComponent(path) + (extra || "");
  }

  function joinPath(dir, name) {
    return (dir.endsWith("/") ? dir : dir + "/") + name;
  }

  function humanSize(n) {
    if (n < 1024) return n + " B";
    if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + " MiB";
    return (n / (1 << 30)).toFixed(1) + " GiB";
  }

  async function loadFiles(dir) {
    if (!filesSandbox) return;
    $("#files-error").textContent = "";
    let list;
    try {
      list = await api("GET", filesURL("/files", dir));
    } catch (e) {
      if (dir !== "/" && e.status === 404) return loadFiles("/");
      $("#files-error").textContent = e.message;
      return;
    }
    if (!list.entries) { // a file, not a directory
      $("#files-error").textContent = dir + " is a file";
      return;
    }
    filesDir = list.dir.path;
    $("#files-path").value = filesDir;
    const rows = list.entries
      .sort((a, b) => (a.type === "dir") === (b.type === "dir") ? a.name.localeCompare(b.name) : a.type === "dir" ? -1 : 1)
      .map((e) => {
        const tr = document.createElement("tr");
        tr.dataset.name = e.name;
        tr.dataset.type = e.type;
        const name = document.createElement("td");
        name.className = "name";
        const link = document.createElement("a");
        link.textContent = e.name + (e.type === "dir" ? "/" : e.type === "symlink" ? " → " + e.target : "");
        link.addEventListener("click", () => (e.type === "dir" ? loadFiles(e.path) : openFile(e)));
        name.appendChild(link);
        const size = document.createElement("td");
        size.className = "num";
        size.textContent = e.type === "dir" ? "" : humanSize(e.size);
        const mode = document.createElement("td");
        mode.textContent = e.mode;
        const mtime = document.createElement("td");
        const d = new Date(e.mtime), pad = (n) => String(n).padStart(2, "0");
        mtime.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
        name.title = e.path + (e.type === "symlink" ? " → " + e.target : "");
        const act = document.createElement("td");
        act.className = "actions";
        if (e.type === "file") {
          const b = button("↓", "download-btn", () => downloadFile(e));
          b.title = "Download " + e.name;
          act.appendChild(b);
        }
        tr.append(name, size, mode, mtime, act);
        return tr;
      });
    $("#files tbody").replaceChildren(...rows);
  }

  async function fetchFile(e) {
    const resp = await fetch(filesURL("/files", e.path), { headers: { Authorization: "Bearer " + key } });
    if (!resp.ok) {
      const data = await resp.json().catch(() => ({}));
      throw new Error((data.error && data.error.message) || resp.statusText);
    }
    return resp.blob();
  }

  // openFile shows a text file (up to 1 MiB) in the viewer.
  async function openFile(e) {
    $("#files-error").textContent = "";
    if (e.size > 1 << 20) {
      $("#files-error").textContent = e.name + " is over 1 MiB: download it instead";
      return;
    }
    try {
      const bytes = new Uint8Array(await (await fetchFile(e)).arrayBuffer());
      let text;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch (_) {
        $("#files-error").textContent = e.name + " is not text: download it instead";
        return;
      }
      $("#viewer-name").textContent = e.path;
      $("#viewer-text").textContent = text;
      $("#viewer").hidden = false;
    } catch (err) {
      $("#files-error").textContent = err.message;
    }
  }

  async function downloadFile(e) {
    const blob = await fetchFile(e);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = e.name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  $("#files-upload").addEventListener("change", async (ev) => {
    const files = [...ev.target.files];
    ev.target.value = "";
    for (const f of files) {
      $("#files-error").textContent = "uploading " + f.name + "…";
      const resp = await fetch(filesURL("/files", joinPath(filesDir, f.name)), {
        method: "PUT",
        headers: { Authorization: "Bearer " + key, "Content-Type": "application/octet-stream" },
        body: f,
      });
      if (!resp.ok) {
        const data = await resp.json().catch(() => ({}));
        $("#files-error").textContent = f.name + ": " + ((data.error && data.error.message) || resp.statusText);
        return;
      }
    }
    $("#files-error").textContent = "";
    loadFiles(filesDir);
  });
  $("#files-up").addEventListener("click", () => {
    const parent = filesDir.replace(/\/[^/]*\/?$/, "") || "/";
    loadFiles(parent);
  });
  $("#files-go").addEventListener("click", () => loadFiles($("#files-path").value.trim() || "/"));
  $("#files-path").addEventListener("keydown", (ev) => { if (ev.key === "Enter") loadFiles($("#files-path").value.trim() || "/"); });
  $("#viewer-close").addEventListener("click", () => { $("#viewer").hidden = true; });

  // The background processes of the open sandbox, and a log view that follows.
  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  async function loadProcs() {
    const id = filesSandbox;
    if (!id) return;
    let list;
    try {
      list = await api("GET", "/v1/sandboxes/" + id + "/processes");
    } catch (e) {
      $("#procs-error").textContent = e.message;
      return;
    }
    if (id !== filesSandbox) return;
    $("#procs-error").textContent = "";
    const rows = list.processes.map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.pid = p.pid;
      tr.dataset.state = p.state;
      tr.dataset.tag = p.tag || "";
      let state = p.state;
      if (p.state === "exited") state = p.signal ? "killed (" + p.signal + ")" : "exited " + p.exit_code;
      const cmd = cell(p.cmd.join(" "), "cmd");
      cmd.title = p.cmd.join(" ");
      const badge = document.createElement("span");
      badge.className = "state " + (p.state === "running" ? "running" : p.exit_code === 0 && !p.signal ? "done" : "failed");
      badge.textContent = state;
      const st = document.createElement("td");
      st.appendChild(badge);
      const act = document.createElement("td");
      act.className = "actions";
      act.appendChild(button("Logs", "logs-btn", async () => followLog(id, p.pid, p.cmd.join(" "))));
      if (p.state === "running") {
        act.appendChild(button("Kill", "kill-btn danger", async () => {
          await api("DELETE", "/v1/sandboxes/" + id + "/processes/" + p.pid);
          await loadProcs();
        }));
      }
      tr.append(cell(String(p.pid), "num"), cell(p.tag || ""), cmd, st, cell(Math.round(p.cpu_ms) + " ms", "num"), act);
      return tr;
    });
    syncRows($("#procs tbody"), rows);
  }

  $("#proc-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = filesSandbox;
    if (!id) return;
    $("#procs-error").textContent = "";
    try {
      const body = { shell: $("#proc-cmd").value };
      if ($("#proc-tag").value.trim()) body.tag = $("#proc-tag").value.trim();
      const p = await api("POST", "/v1/sandboxes/" + id + "/processes", body);
      $("#proc-cmd").value = "";
      $("#proc-tag").value = "";
      await loadProcs();
      followLog(id, p.pid, p.cmd.join(" "));
    } catch (e) {
      $("#procs-error").textContent = e.message;
    }
  });

  // logLimit bounds the text the log view keeps; older lines are dropped.
  const logLimit = 256 << 10;

  function appendLog(text, cls) {
    const pre = $("#log-text");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    pre.appendChild(span);
    let size = pre.textContent.length;
    while (size > logLimit && pre.firstChild) {
      size -= pre.firstChild.textContent.length;
      pre.firstChild.remove();
    }
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }

  // followLog streams a process's output (NDJSON of logs?follow=true) into
  // the log view until the process ends or the view is closed.
  async function followLog(id, pid, title) {
    closeLog();
    const abort = new AbortController();
    logAbort = abort;
    $("#log").hidden = false;
    $("#log-title").textContent = pid + " · " + title;
    $("#log-status").textContent = "following…";
    $("#log-text").replaceChildren();
    const dec = new TextDecoder();
    let rest = "";
    try {
      const resp = await fetch("/v1/sandboxes/" + id + "/processes/" + pid + "/logs?follow=true",
        { headers: { Authorization: "Bearer " + key }, signal: abort.signal });
      if (!resp.ok) {
        const data = await resp.json().catch(() => ({}));
        throw new Error((data.error && data.error.message) || resp.statusText);
      }
      const reader = resp.body.getReader();
      const out = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += dec.decode(value, { stream: true });
        const lines = rest.split("\n");
        rest = lines.pop();
        for (const line of lines) {
          if (!line) continue;
          const r = JSON.parse(line);
          if (r.type === "output") {
            const bytes = r.encoding === "base64" ? Uint8Array.from(atob(r.data), (c) => c.charCodeAt(0)) : null;
            appendLog(bytes ? out.decode(bytes, { stream: true }) : r.data, r.stream === "stderr" ? "stderr" : "");
          } else if (r.type === "gap") {
            appendLog("[" + (r.to - r.offset) + " bytes of older output were dropped]\n", "gap");
          } else if (r.type === "end") {
            const p = r.process || {};
            $("#log-status").textContent = p.signal ? "killed (" + p.signal + ")" : "exited " + p.exit_code;
            loadProcs();
          } else if (r.type === "error") {
            $("#log-status").textContent = (r.error && r.error.message) || "error";
          }
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      $("#log-status").textContent = e.message;
    }
  }

  function closeLog() {
    if (logAbort) logAbort.abort();
    logAbort = null;
    $("#log").hidden = true;
  }
  $("#log-close").addEventListener("click", closeLog);

  // The exposed ports of the open sandbox, as links where a browser can
  // open them (the host form, with the token once).
  async function loadPorts() {
    const id = filesSandbox;
    if (!id) return;
    let list;
    try {
      list = await api("GET", "/v1/sandboxes/" + id + "/ports");
    } catch (e) {
      $("#ports-error").textContent = e.message;
      return;
    }
    if (id !== filesSandbox) return;
    $("#ports-error").textContent = "";
    let hostForm = false;
    const rows = list.ports.map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.port = p.port;
      const link = document.createElement("td");
      link.className = "link";
      if (p.url !== p.path_url) {
        hostForm = true;
        const a = document.createElement("a");
        a.href = p.public ? p.url : p.url + "?bothy_token=" + encodeURIComponent(p.token);
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        a.textContent = p.url + (p.public ? " (public)" : "");
        link.appendChild(a);
      } else {
        link.textContent = p.path_url;
        link.title = "needs the API key";
      }
      const act = document.createElement("td");
      act.className = "actions";
      act.appendChild(button("Unexpose", "unexpose-btn danger", async () => {
        await api("DELETE", "/v1/sandboxes/" + id + "/ports/" + p.port);
        await loadPorts();
      }));
      tr.append(cell(String(p.port), "num"), link, act);
      return tr;
    });
    syncRows($("#ports tbody"), rows);
    $("#ports-note").hidden = hostForm;
  }

  $("#port-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = filesSandbox;
    if (!id) return;
    $("#ports-error").textContent = "";
    try {
      await api("POST", "/v1/sandboxes/" + id + "/ports", { port: parseInt($("#port-number").value, 10), public: $("#port-public").checked });
      $("#port-number").value = "";
      await loadPorts();
    } catch (e) {
      $("#ports-error").textContent = e.message;
    }
  });

  $("#terminal-close").addEventListener("click", closeTerminal);
  $("#terminal-kill").addEventListener("click", async () => {
    if (termSandbox && termSession) {
      try { await api("DELETE", "/v1/sandboxes/" + termSandbox + "/pty/sessions/" + termSession); } catch (e) { /* already gone */ }
    }
    closeTerminal();
  });
  window.addEventListener("resize", () => { if (fit) fit.fit(); });

  // Snapshots: checkpoint, list, restore in place, branch, delete.
  function fillSandboxSelect(sandboxes) {
    const sel = $("#snap-sandbox");
    const keep = sel.value;
    sel.replaceChildren(...sandboxes.map((sb) => new Option(sb.id + " (" + sb.state + ")", sb.id, false, sb.id === keep)));
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  $("#snap-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const btn = $("#snap-create");
    btn.disabled = true;
    $("#snap-error").textContent = "";
    try {
      const id = $("#snap-sandbox").value;
      if (!id) throw new Error("Create a sandbox first.");
      const body = {};
      if ($("#snap-name").value.trim()) body.name = $("#snap-name").value.trim();
      await api("POST", "/v1/sandboxes/" + encodeURIComponent(id) + "/snapshots", body);
      $("#snap-name").value = "";
      await loadSnapshots();
    } catch (e) {
      $("#snap-error").textContent = e.message;
    }
    btn.disabled = false;
  });

  async function loadSnapshots() {
    let list;
    try {
      list = await api("GET", "/v1/snapshots");
    } catch (e) {
      $("#snap-error").textContent = e.message;
      return;
    }
    const rows = list.snapshots.map((sn) => {
      const tr = document.createElement("tr");
      tr.dataset.id = sn.id;
      tr.dataset.name = sn.name;
      tr.append(cell(sn.id, "id"), cell(sn.name), cell(sn.sandbox_id, "id"), cell(humanSize(sn.size_bytes), "num"), cell(age(sn.created_at)));
      const actions = document.createElement("td");
      actions.className = "actions";
      actions.appendChild(button("Restore", "restore-btn", async () => {
        if (!confirm("Restore " + (sn.name || sn.id) + " into " + sn.sandbox_id + "? Changes made since are lost.")) return;
        await api("POST", "/v1/sandboxes/" + encodeURIComponent(sn.sandbox_id) + "/restore", { snapshot: sn.id });
        await refresh();
      }, "#snap-error"));
      actions.appendChild(button("Branch", "branch-btn", async () => {
        await api("POST", "/v1/sandboxes", { snapshot: sn.id });
        await refresh();
      }, "#snap-error"));
      actions.appendChild(button("Delete", "danger", async () => {
        if (!confirm("Delete snapshot " + (sn.name || sn.id) + "?")) return;
        await api("DELETE", "/v1/snapshots/" + encodeURIComponent(sn.id));
        await loadSnapshots();
      }, "#snap-error"));
      tr.appendChild(actions);
      return tr;
    });
    syncRows($("#snapshots tbody"), rows);
    $("#snap-empty").hidden = rows.length > 0;
    $("#snap-count").textContent = rows.length ? "(" + rows.length + ")" : "";
  }

  async function loadApps() {
    let list;
    try {
      list = await api("GET", "/v1/apps");
    } catch (e) {
      $("#apps-error").textContent = e.message;
      return;
    }
    $("#apps-error").textContent = "";
    const rows = list.apps.map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.name = a.name;
      tr.append(cell(a.name, "id"), cell(a.runtime), cell(String(a.version), "num"), cell(humanSize(a.storage_bytes), "num"),
        cell(a.warm ? "yes" : ""), cell(age(a.updated_at)));
      const actions = document.createElement("td");
      actions.className = "actions";
      actions.appendChild(button("Delete", "danger", async () => {
        if (!confirm("Delete app " + a.name + " and its database?")) return;
        await api("DELETE", "/v1/apps/" + encodeURIComponent(a.name));
        await loadApps();
      }, "#apps-error"));
      tr.appendChild(actions);
      return tr;
    });
    syncRows($("#apps tbody"), rows);
    $("#apps-count").textContent = rows.length ? "(" + rows.length + ")" : "";
  }

  async function loadUsage() {
    let u;
    try {
      u = await api("GET", "/v1/usage");
    } catch (e) {
      $("#usage-error").textContent = e.message;
      return;
    }
    $("#usage-error").textContent = "";
    const rows = u.rows.map((r) => {
      const tr = document.createElement("tr");
      tr.append(cell(new Date(r.hour).toLocaleString([], { dateStyle: "short", timeStyle: "short" })), cell(r.kind), cell(r.app, "id"),
        cell(String(r.requests), "num"), cell(String(r.errors), "num"), cell(r.cpu_ms.toFixed(0), "num"),
        cell(r.rows_read + " / " + r.rows_written, "num"), cell(humanSize(r.bytes_in) + " / " + humanSize(r.bytes_out), "num"));
      return tr;
    });
    $("#usage tbody").replaceChildren(...rows);
    $("#usage-empty").hidden = rows.length > 0;
  }

  $("#key-create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#keys-error").textContent = "";
    try {
      const k = await api("POST", "/v1/keys", { name: $("#newkey-name").value.trim(), admin: $("#newkey-admin").checked });
      const p = $("#newkey-secret");
      p.hidden = false;
      p.textContent = "";
      p.append("Key " + k.name + " (shown once, keep it): ");
      const code = document.createElement("code");
      code.textContent = k.secret;
      p.appendChild(code);
      $("#newkey-name").value = "";
      await loadKeys();
    } catch (e) {
      $("#keys-error").textContent = e.message;
    }
  });

  async function loadKeys() {
    let list;
    try {
      list = await api("GET", "/v1/keys");
    } catch (e) {
      $("#keys-error").textContent = e.message;
      return;
    }
    const rows = list.keys.map((k) => {
      const tr = document.createElement("tr");
      tr.dataset.id = k.id;
      tr.append(cell(k.id, "id"), cell(k.name), cell(k.admin ? "admin" : ""), cell(age(k.created_at)), cell(k.revoked_at ? "revoked" : "active"));
      const actions = document.createElement("td");
      actions.className = "actions";
      if (!k.revoked_at) {
        actions.appendChild(button("Revoke", "danger", async () => {
          if (!confirm("Revoke key " + k.name + "? Whoever holds it is refused from now on.")) return;
          await api("DELETE", "/v1/keys/" + encodeURIComponent(k.id));
          await loadKeys();
        }, "#keys-error"));
      }
      tr.appendChild(actions);
      return tr;
    });
    syncRows($("#keys tbody"), rows);
  }

  if (key) showApp(); else showLogin();
})();
