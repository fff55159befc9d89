// The Swarm board: plain JavaScript, no build step, no third-party code.
// It folds nothing itself: the gateway's board stream sends the swarm's view, then what each
// event changed (read from the gateway's fold); this file keeps that view and draws it.
//
// The view holds at most PER_STATUS tasks of each status (`?per_status=` in the page's address
// changes it): the next to be taken of an unfinished status, the newest of a finished one, as
// the gateway picked them. For each status cut short the board keeps its *edge*, the last task
// it holds in that status's order: every task of the status it does not hold comes after the
// edge. So a change for a task the board does not hold adds it only when it comes before the
// edge (the board shows what it would have been sent); "N more" loads the next page after the
// edge through the paged listing, in the same order; a status holding more than it was asked to
// show drops its last ones and moves its edge up.
"use strict";

(function () {
  const STATUS_COLUMNS = [
    ["blocked", "Blocked", ["blocked"]],
    ["pending", "Pending", ["pending", "requeued"]],
    ["running", "Running", ["claimed", "running"]],
    ["completed", "Completed", ["completed"]],
    ["failed", "Failed", ["failed"]],
    ["cancelled", "Cancelled", ["cancelled"]],
  ];
  const PRIORITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
  const MAX_EVENTS_KEPT = 200;
  const STATUSES = ["blocked", "pending", "claimed", "running", "completed", "failed", "requeued", "cancelled"];
  const FINISHED = ["completed", "failed", "cancelled"];
  const PER_STATUS = (() => {
    // tasks of each status shown at first, and loaded by each "more" (the gateway's default 200)
    const asked = Number(new URLSearchParams(window.location.search).get("per_status"));
    return Number.isInteger(asked) && asked >= 1 && asked <= 1000 ? asked : 200;
  })();

  const state = {
    swarms: [],
    swarm: null, // the swarm shown
    view: "board", // board | graph | chat | task
    taskId: null,
    board: null, // {seq, swarm, tasks: Map, agents, project, edges, caps, loads}
    recent: [], // the last events seen live (newest last)
    chat: [],
    chatSeq: 0,
    replay: null, // the board at a past position, while the slider is away from live
    detail: null, // the task page's task (with its events)
    output: "", // the task page's output
    streams: [],
    taskStreams: [],
    drawPending: false,
  };

  // --- small helpers -------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function age(seconds) {
    if (!seconds) return "";
    const s = Math.max(0, Date.now() / 1000 - seconds);
    if (s < 60) return `${Math.floor(s)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    if (s < 86400) return `${Math.floor(s / 3600)}h`;
    return `${Math.floor(s / 86400)}d`;
  }

  function when(seconds) {
    return seconds ? new Date(seconds * 1000).toLocaleString() : "";
  }

  function money(value) {
    return `$${(value || 0).toFixed(value && value < 0.1 ? 4 : 2)}`;
  }

  function count(value) {
    if (!value) return "0";
    if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
    if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
    return String(value);
  }

  function shortCommit(commit) {
    return commit ? commit.slice(0, 10) : "";
  }

  function href(swarm, view, task) {
    const base = `#/${encodeURIComponent(swarm || "")}`;
    if (view === "task") return `${base}/task/${encodeURIComponent(task)}`;
    return view && view !== "board" ? `${base}/${view}` : base;
  }

  async function api(path, options) {
    return (await request(path, options)).body;
  }

  async function request(path, options) {
    // the answer's body, and whether a Link names a next page
    const response = await fetch(path, {
      credentials: "same-origin",
      headers: { Accept: "application/json", ...(options && options.body ? { "Content-Type": "application/json" } : {}) },
      ...options,
    });
    if (response.status === 401) {
      window.location.assign("/"); // the session expired: the sign-in page
      throw new Error("signed out");
    }
    const text = await response.text();
    const body = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = new Error((body && body.error && body.error.message) || response.statusText);
      error.status = response.status;
      error.field = body && body.error && body.error.field;
      throw error;
    }
    return { body, next: /rel="next"/.test(response.headers.get("Link") || "") };
  }

  function stream(path, handlers) {
    const source = new EventSource(path);
    for (const [name, handler] of Object.entries(handlers)) {
      source.addEventListener(name, (message) => handler(JSON.parse(message.data), message));
    }
    return source;
  }

  function closeAll(list) {
    while (list.length) list.pop().close();
  }

  function setLive(kind, text) {
    const node = document.getElementById("live");
    node.dataset.state = kind;
    node.textContent = text;
  }

  // --- the live board ------------------------------------------------------------------

  function connect(swarm) {
    closeAll(state.streams);
    state.board = null;
    state.recent = [];
    state.chat = [];
    state.chatSeq = 0;
    state.replay = null;
    setLive("connecting", "connecting…");
    const source = stream(`/swarms/${encodeURIComponent(swarm)}/board/stream?per_status=${PER_STATUS}`, {
      board: (view) => {
        state.board = { ...view, tasks: new Map(view.tasks.map((t) => [t.id, t])), ...windows(view) };
        setLive("live", "live");
        draw();
      },
      change: (change) => applyChange(change),
      gone: () => {
        setLive("gone", "no such swarm");
        draw();
      },
    });
    source.onerror = () => setLive("connecting", "reconnecting…");
    state.streams.push(source);
    openChat(swarm);
  }

  function applyChange(change) {
    const board = state.board;
    if (!board) return;
    board.seq = change.seq;
    if (change.swarm === null) {
      setLive("gone", "swarm deleted");
      board.swarm = null;
    } else {
      board.swarm = change.swarm;
      board.agents = change.agents;
    }
    if (change.task_id) {
      for (const touched of board.loads) touched.set(change.task_id, change.task);
      const task = change.task;
      if (task && (board.tasks.has(task.id) || fits(board, task))) {
        board.tasks.set(task.id, task); // one the page holds stays in view, wherever it goes
        trim(board, task.status);
      } else board.tasks.delete(change.task_id);
      if (!task) gone(board, change.task_id);
    }
    if ("project" in change) board.project = change.project;
    state.recent.push(change.event);
    if (state.recent.length > MAX_EVENTS_KEPT) state.recent.shift();
    if (state.view === "task" && change.task_id === state.taskId && state.detail) {
      if (change.task) Object.assign(state.detail, change.task);
      state.detail.events.push(change.event);
      if (change.task && ["completed", "failed", "cancelled"].includes(change.task.status)) {
        loadOutput(state.swarm, state.taskId);
      }
    }
    draw();
  }

  // --- what the board holds of each status ----------------------------------------------

  function byOrder(status) {
    // the order the gateway picks and pages a status in: by priority, or newest first
    if (FINISHED.includes(status)) {
      return (a, b) => b.created_seq - a.created_seq || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
    }
    return (a, b) =>
      PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] ||
      a.created_at - b.created_at ||
      a.created_seq - b.created_seq ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  }

  function orderOf(status) {
    return FINISHED.includes(status) ? "newest" : "priority";
  }

  function edgeOf(task) {
    return { id: task.id, priority: task.priority, created_at: task.created_at, created_seq: task.created_seq };
  }

  function held(board, status) {
    return [...board.tasks.values()].filter((t) => t.status === status).sort(byOrder(status));
  }

  function windows(view) {
    // the first message: each status cut short (``more``) has its edge, the last task sent
    const edges = {};
    const caps = {};
    for (const status of STATUSES) {
      const mine = view.tasks.filter((t) => t.status === status).sort(byOrder(status));
      edges[status] = (view.more || {})[status] && mine.length ? edgeOf(mine[mine.length - 1]) : null;
      caps[status] = PER_STATUS;
    }
    return { edges, caps, loads: new Set(), loading: new Set(), failed: null };
  }

  function fits(board, task) {
    // whether the board would hold ``task``: its status is held whole, or it comes first
    const edge = board.edges[task.status];
    return !edge || byOrder(task.status)(task, edge) <= 0;
  }

  function gone(board, taskId) {
    // a deleted task cannot be a listing's ``after``: the next page of its status starts over
    for (const edge of Object.values(board.edges)) if (edge && edge.id === taskId) edge.gone = true;
  }

  function trim(board, status) {
    // at most as many as asked for: the last ones dropped, the edge moved up to the last kept
    const cap = board.caps[status];
    let count = 0;
    for (const task of board.tasks.values()) if (task.status === status) count += 1;
    if (count <= cap) return; // (the common case: no sort on every change)
    const mine = held(board, status);
    for (const task of mine.slice(cap)) board.tasks.delete(task.id);
    board.edges[status] = edgeOf(mine[cap - 1]);
  }

  async function loadMore(statuses) {
    // the next page of each status cut short, after its edge, in its order
    const board = state.board;
    const swarm = state.swarm;
    await Promise.all(
      statuses
        .filter((status) => board.edges[status] && !board.loading.has(status))
        .map(async (status) => {
          board.loading.add(status);
          board.failed = null;
          draw();
          const touched = new Map(); // changes meanwhile: newer than the page, they win
          board.loads.add(touched);
          const edge = board.edges[status];
          const query = { status, order: orderOf(status), limit: PER_STATUS, after: edge.id };
          // the edge's task deleted: the page from the start, what is held included
          const again = () => ({ ...query, after: undefined, limit: Math.min(1000, held(board, status).length + PER_STATUS) });
          let page;
          try {
            page = await listing(swarm, edge.gone ? again() : query);
          } catch (error) {
            if (error.field !== "after") throw error; // deleted, and the board not told yet
            page = await listing(swarm, again());
          } finally {
            board.loads.delete(touched);
            board.loading.delete(status);
          }
          if (state.board !== board) return; // another swarm, or a fresh view, since
          for (const task of page.body) {
            if (!touched.has(task.id) && !board.tasks.has(task.id)) board.tasks.set(task.id, task);
          }
          const last = page.body[page.body.length - 1];
          board.edges[status] = page.next && last ? edgeOf(last) : null;
          if (last && touched.has(last.id) && !touched.get(last.id)) gone(board, last.id);
          for (const [id, task] of touched) {
            if (task && task.status === status && !board.tasks.has(id) && fits(board, task)) board.tasks.set(id, task);
          }
          board.caps[status] += PER_STATUS;
          trim(board, status);
          draw();
        }),
    ).catch((error) => {
      board.failed = error.message; // said on the button; pressing it again asks again
      draw();
    });
  }

  function listing(swarm, query) {
    const given = Object.entries(query).filter(([, value]) => value !== undefined);
    return request(`/swarms/${encodeURIComponent(swarm)}/tasks?${new URLSearchParams(given)}`);
  }

  async function openChat(swarm) {
    try {
      const history = await api(`/swarms/${encodeURIComponent(swarm)}/chat?limit=200`);
      if (state.swarm !== swarm) return;
      state.chat = history.messages;
      state.chatSeq = history.messages.length ? history.messages[history.messages.length - 1].seq : 0;
    } catch (error) {
      state.chat = [];
    }
    const source = stream(`/swarms/${encodeURIComponent(swarm)}/chat/stream?since=${state.chatSeq}`, {
      message: (message) => {
        if (state.chat.some((m) => m.seq === message.seq)) return;
        state.chat.push(message);
        state.chatSeq = message.seq;
        draw();
      },
    });
    state.streams.push(source);
    draw();
  }

  // --- drawing -------------------------------------------------------------------------

  function draw() {
    if (state.drawPending) return;
    state.drawPending = true;
    requestAnimationFrame(() => {
      state.drawPending = false;
      render();
    });
  }

  function render() {
    renderNav();
    renderTotals();
    renderReplay();
    const main = document.getElementById("main");
    let content;
    if (!state.swarm) content = h("p", { class: "empty", text: "No swarm yet: create one with swarm up or POST /swarms." });
    else if (!state.board) content = h("p", { class: "empty", text: "Loading…" });
    else if (state.view === "graph") content = renderGraph(shown());
    else if (state.view === "chat") {
      const open = document.getElementById("chat-view");
      const signature = `${state.swarm}:${state.chat.length}:${state.chatSeq}:${(state.board.agents || []).length}`;
      if (open && open.dataset.signature === signature) return; // nothing new: leave it be
      if (open) {
        open.dataset.signature = signature;
        // keep the form (and what is being typed) in place: only the messages change
        const fresh = renderChat();
        open.querySelector(".messages").replaceWith(fresh.querySelector(".messages"));
        open.querySelector(".hint").replaceWith(fresh.querySelector(".hint"));
        scrollChat();
        return;
      }
      content = renderChat();
      content.dataset.signature = signature;
    }
    else if (state.view === "task") {
      // redrawn only when the task, its history or its output changed (not on others' events)
      const task = state.detail;
      const signature = task ? `${task.id}:${task.status}:${(task.events || []).length}:${state.output.length}:${task.missing || ""}` : "";
      const open = main.querySelector("[data-task-page]");
      if (task && open && open.dataset.signature === signature) return;
      content = renderTask();
      content.dataset.signature = signature;
    }
    else content = renderBoard(shown());
    main.replaceChildren(content);
  }

  function shown() {
    // the live board, or the replayed one while the slider is in the past
    if (state.replay) return state.replay;
    return state.board;
  }

  function renderNav() {
    const select = document.getElementById("swarm-switch");
    const ids = state.swarms.map((s) => s.id);
    if (select.dataset.ids !== ids.join(",")) {
      select.replaceChildren(...state.swarms.map((s) => h("option", { value: s.id, text: s.name && s.name !== s.id ? `${s.id} · ${s.name}` : s.id })));
      select.dataset.ids = ids.join(",");
    }
    if (state.swarm) select.value = state.swarm;
    for (const link of document.querySelectorAll("#views a")) {
      link.setAttribute("href", href(state.swarm, link.dataset.view));
      link.classList.toggle("current", link.dataset.view === state.view);
    }
  }

  function renderTotals() {
    const node = document.getElementById("totals");
    const view = shown();
    if (!view || !view.swarm) {
      node.replaceChildren();
      return;
    }
    const swarm = view.swarm;
    const counts = swarm.counts || view.counts || {};
    const items = [
      h("span", { class: "stat" }, h("b", { text: counts.total || 0 }), " tasks"),
      ...STATUS_COLUMNS.map(([key, label, statuses]) =>
        h("span", { class: `stat s-${key}` }, h("b", { text: statuses.reduce((n, s) => n + (counts[s] || 0), 0) }), ` ${label.toLowerCase()}`),
      ),
      h("span", { class: "stat" }, h("b", { text: (view.agents || []).length }), " agents"),
    ];
    const spent = swarm.spent_usd || 0;
    let budget;
    if (swarm.budget_usd !== null && swarm.budget_usd !== undefined) {
      const bar = h("span", { class: "bar" }, h("span", { class: "fill" }));
      const ratio = swarm.budget_usd > 0 ? Math.min(1, spent / swarm.budget_usd) : 1;
      bar.firstChild.style.width = `${Math.round(ratio * 100)}%`;
      budget = h("span", { class: `stat budget${swarm.budget_reached ? " reached" : ""}`, title: swarm.budget_reached || "" }, h("b", { text: money(spent) }), ` of ${money(swarm.budget_usd)} budget `, bar);
    } else {
      budget = h("span", { class: "stat budget" }, h("b", { text: money(spent) }), " spent (no budget)");
    }
    items.push(budget);
    const stuck = Object.keys(swarm.untakeable || {}).length;
    if (stuck) {
      items.push(h("span", { class: "stat warning", title: Object.values(swarm.untakeable).join("\n") }, h("b", { text: stuck }), " no agent can take"));
    }
    if (swarm.tokens) {
      items.push(h("span", { class: "stat" }, h("b", { text: `${count(swarm.tokens.input)} / ${count(swarm.tokens.output)}` }), " tokens in/out"));
    }
    node.replaceChildren(...items);
  }

  function renderReplay() {
    const slider = document.getElementById("replay-at");
    const label = document.getElementById("replay-label");
    const back = document.getElementById("replay-live");
    const board = state.board;
    const max = board ? board.seq : 0;
    slider.max = String(max);
    slider.disabled = !board;
    if (!state.replay) {
      slider.value = String(max);
      label.textContent = `live · #${max}`;
      back.hidden = true;
    } else {
      label.textContent = `at #${state.replay.seq} · ${when(state.replay.time)}`;
      back.hidden = false;
    }
  }

  function taskCard(task) {
    return h(
      "a",
      { class: `card p-${task.priority}`, href: href(state.swarm, "task", task.id), "data-task": task.id, "data-status": task.status },
      h("span", { class: "title", text: task.title }),
      h(
        "span",
        { class: "meta" },
        h("span", { class: `prio p-${task.priority}`, text: task.priority }),
        h("code", { class: "id", text: task.id }),
        task.status === "requeued" || task.status === "claimed" ? h("span", { class: "sub", text: task.status }) : null,
      ),
      task.tags.length ? h("span", { class: "tags" }, task.tags.map((t) => h("span", { class: "tag", text: t }))) : null,
      h(
        "span",
        { class: "facts" },
        task.agent ? h("span", { class: "agent", text: `@${task.agent}` }) : null,
        h("span", { class: "attempt", title: "attempt", text: `#${task.attempt}` }),
        task.cost_usd ? h("span", { class: "cost", text: money(task.cost_usd) }) : null,
        h("span", { class: "age", title: when(task.created_at), text: age(task.created_at) }),
      ),
      task.reason && (task.status === "failed" || task.status === "cancelled" || task.status === "requeued")
        ? h("span", { class: "reason", text: task.reason })
        : null,
      task.status === "blocked" ? h("span", { class: "waits", text: `waits on ${waitingOn(task).join(", ")}` }) : null,
      untakeable(task.id) ? h("span", { class: "warning", title: untakeable(task.id), text: "⚠ no agent can take it" }) : null,
      task.status === "cancelled" && task.cancelled_by ? h("span", { class: "waits", text: `cancelled by ${task.cancelled_by}` }) : null,
    );
  }

  function untakeable(taskId) {
    const swarm = shown().swarm;
    return swarm && swarm.untakeable ? swarm.untakeable[taskId] : undefined;
  }

  function waitingOn(task) {
    // a dependency the page holds by its status now, another as the gateway last said
    const tasks = shown().tasks;
    const notDone = new Set(task.waiting_on || task.depends);
    return task.depends
      .filter((id) => (tasks.has(id) ? tasks.get(id).status !== "completed" : notDone.has(id)))
      .map((id) => (tasks.has(id) ? `${id} (${tasks.get(id).status})` : id));
  }

  function renderBoard(view) {
    const tasks = [...view.tasks.values()];
    const counts = (view.swarm && view.swarm.counts) || view.counts || {};
    const columns = STATUS_COLUMNS.map(([key, label, statuses]) => {
      const mine = tasks.filter((t) => statuses.includes(t.status)).sort(byOrder(statuses[0]));
      const total = Math.max(mine.length, statuses.reduce((n, s) => n + (counts[s] || 0), 0));
      const more = total - mine.length;
      return h(
        "section",
        { class: `column s-${key}`, "data-column": key },
        h("h2", {}, label, h("span", { class: "n", text: total })),
        mine.length ? mine.map(taskCard) : more ? null : h("p", { class: "none", text: "—" }),
        more ? moreOf(view, statuses, more) : null,
      );
    });
    return h(
      "div",
      { class: "board-view" },
      h("div", { class: "columns" }, columns),
      h("aside", { class: "side" }, renderAgents(view), renderActivity()),
    );
  }

  function moreOf(view, statuses, more) {
    // "N more": a button on the live board (the next page of each status cut short), a note on
    // a past one (the slider's board is as the gateway sent it)
    const board = state.board;
    if (view !== board || !statuses.some((s) => board.edges[s])) {
      return h("p", { class: "more", "data-more": statuses[0], text: `${more} more` });
    }
    const loading = statuses.some((s) => board.loading.has(s));
    const label = loading ? "loading…" : board.failed ? `${more} more (failed: ${board.failed})` : `${more} more`;
    return h("button", { type: "button", class: "more", "data-more": statuses[0], disabled: loading, onclick: () => loadMore(statuses) }, label);
  }

  function renderAgents(view) {
    const agents = view.agents || [];
    return h(
      "section",
      { class: "agents", "data-section": "agents" },
      h("h2", {}, "Agents", h("span", { class: "n", text: agents.length })),
      agents.length
        ? h(
            "ul",
            {},
            agents.map((a) =>
              h(
                "li",
                { "data-agent": a.id, "data-status": a.status },
                h("span", { class: `dot a-${a.status}`, title: a.status }),
                h("span", { class: "name", text: a.name }),
                a.role ? h("span", { class: "role", text: a.role }) : null,
                h("span", { class: "astatus", text: a.status }),
                a.task ? h("a", { class: "current", href: href(state.swarm, "task", a.task), text: a.task }) : null,
                a.spent_usd ? h("span", { class: "cost", text: money(a.spent_usd) }) : null,
              ),
            ),
          )
        : h("p", { class: "none", text: "No agents registered." }),
    );
  }

  function renderActivity() {
    const events = state.recent.slice(-12).reverse();
    return h(
      "section",
      { class: "activity" },
      h("h2", { text: "Activity" }),
      events.length
        ? h("ol", {}, events.map((e) => h("li", {}, h("code", { text: `#${e.seq}` }), " ", h("span", { class: "etype", text: e.type }), " ", e.type.startsWith("task.") ? h("a", { href: href(state.swarm, "task", e.id), text: e.id }) : h("span", { text: e.id }))))
        : h("p", { class: "none", text: "Live events appear here." }),
    );
  }

  // --- the dependency graph ------------------------------------------------------------

  function renderGraph(view) {
    const tasks = view.tasks;
    const inGraph = new Set();
    for (const task of tasks.values()) {
      if (task.depends.length) {
        inGraph.add(task.id);
        for (const dep of task.depends) if (tasks.has(dep)) inGraph.add(dep);
      }
    }
    if (!inGraph.size) return h("div", { class: "graph-view" }, h("p", { class: "empty", text: "No task depends on another." }));
    const depth = new Map();
    const depthOf = (id, seen) => {
      if (depth.has(id)) return depth.get(id);
      if (seen.has(id)) return 0;
      seen.add(id);
      const deps = tasks.get(id).depends.filter((d) => tasks.has(d));
      const value = deps.length ? 1 + Math.max(...deps.map((d) => depthOf(d, seen))) : 0;
      depth.set(id, value);
      return value;
    };
    const layers = [];
    for (const id of [...inGraph].sort((a, b) => tasks.get(a).created_at - tasks.get(b).created_at)) {
      const d = depthOf(id, new Set());
      (layers[d] = layers[d] || []).push(id);
    }
    const W = 200, H = 52, GX = 70, GY = 18, PAD = 12;
    const where = new Map();
    layers.forEach((ids, col) => ids.forEach((id, row) => where.set(id, { x: PAD + col * (W + GX), y: PAD + row * (H + GY) })));
    const width = PAD * 2 + layers.length * (W + GX) - GX;
    const height = PAD * 2 + Math.max(...layers.map((l) => l.length)) * (H + GY) - GY;
    const edges = [];
    for (const id of inGraph) {
      const to = where.get(id);
      for (const dep of tasks.get(id).depends) {
        const from = where.get(dep);
        if (!from) continue;
        const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
        const done = tasks.get(dep).status === "completed";
        edges.push(svg("path", { d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`, class: `edge${done ? " done" : ""}`, "marker-end": "url(#arrow)", "data-edge": `${dep}->${id}` }));
      }
    }
    const nodes = [...inGraph].map((id) => {
      const task = tasks.get(id);
      const at = where.get(id);
      const title = task.title.length > 26 ? `${task.title.slice(0, 25)}…` : task.title;
      const link = svg("a", { href: href(state.swarm, "task", id), "data-node": id, "data-status": task.status },
        svg("rect", { x: at.x, y: at.y, width: W, height: H, rx: 8, class: `node st-${task.status}` }),
        svg("text", { x: at.x + 10, y: at.y + 20, class: "ntitle" }, title),
        svg("text", { x: at.x + 10, y: at.y + 40, class: "nmeta" }, `${id} · ${task.status}`),
        svg("title", {}, `${task.title} (${task.status})`),
      );
      return link;
    });
    const picture = svg("svg", { class: "dag", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "dependency graph" },
      svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))),
      edges, nodes);
    const blocked = [...tasks.values()].filter((t) => t.status === "blocked").sort(byOrder("blocked"));
    return h(
      "div",
      { class: "graph-view" },
      h("div", { class: "dag-scroll" }, picture),
      h(
        "section",
        { class: "waiting" },
        h("h2", { text: "Waiting" }),
        blocked.length
          ? h("ul", {}, blocked.map((t) => h("li", { "data-blocked": t.id }, h("a", { href: href(state.swarm, "task", t.id), text: `${t.id} ${t.title}` }), " waits on ", waitingOn(t).join(", "))))
          : h("p", { class: "none", text: "Nothing is blocked." }),
      ),
    );
  }

  // --- chat ----------------------------------------------------------------------------

  function withMentions(text) {
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(/@[A-Za-z0-9_-]+/g)) {
      if (match.index > last) parts.push(text.slice(last, match.index));
      parts.push(h("span", { class: "mention", text: match[0] }));
      last = match.index + match[0].length;
    }
    parts.push(text.slice(last));
    return parts;
  }

  function renderChat() {
    const list = h(
      "ol",
      { class: "messages", "data-section": "chat" },
      state.chat.map((m) =>
        h(
          "li",
          { class: `msg k-${m.author_kind}`, "data-seq": m.seq },
          h("span", { class: "author", text: m.author }),
          h("time", { title: when(m.time), text: age(m.time) }),
          h("p", { class: "text" }, withMentions(m.text)),
          m.recipients && m.recipients.length ? h("span", { class: "recipients", text: `→ ${m.recipients.join(", ")}` }) : null,
        ),
      ),
    );
    const agents = (state.board.agents || []).map((a) => `@${a.id}`);
    const roles = [...new Set((state.board.agents || []).map((a) => a.role).filter(Boolean))].map((r) => `@${r}`);
    const error = h("p", { class: "error", id: "chat-error", role: "alert" });
    const input = h("textarea", { id: "chat-text", name: "message", rows: 2, required: true, placeholder: "Message… (@all, @role or @agent reach agents' inboxes)" });
    const form = h(
      "form",
      {
        id: "chat-form",
        class: "chat-form",
        onsubmit: async (event) => {
          event.preventDefault();
          const text = input.value.trim();
          if (!text) return;
          try {
            await api(`/swarms/${encodeURIComponent(state.swarm)}/chat`, { method: "POST", body: JSON.stringify({ message: text }) });
            input.value = "";
            state.chatDraft = "";
          } catch (failure) {
            error.textContent = failure.message;
          }
        },
      },
      input,
      h("button", { type: "submit", text: "Post" }),
    );
    input.value = state.chatDraft || "";
    input.addEventListener("input", () => (state.chatDraft = input.value));
    const view = h("div", { class: "chat-view", id: "chat-view" }, list, form, error, h("p", { class: "hint", text: `mentions: @all ${roles.join(" ")} ${agents.join(" ")}` }));
    requestAnimationFrame(scrollChat);
    return view;
  }

  function scrollChat() {
    const list = document.querySelector("#chat-view .messages");
    if (list) list.scrollTop = list.scrollHeight;
  }

  // --- a task's page -------------------------------------------------------------------

  async function openTask(swarm, taskId) {
    closeAll(state.taskStreams);
    state.detail = null;
    state.output = "";
    try {
      state.detail = await api(`/swarms/${encodeURIComponent(swarm)}/tasks/${encodeURIComponent(taskId)}`);
    } catch (error) {
      state.detail = { missing: error.message };
      draw();
      return;
    }
    draw();
    const base = `/swarms/${encodeURIComponent(swarm)}/tasks/${encodeURIComponent(taskId)}`;
    if (["completed", "failed", "cancelled"].includes(state.detail.status)) {
      loadOutput(swarm, taskId);
      return;
    }
    const source = stream(`${base}/logs?follow=1&attempt=${state.detail.attempt}`, {
      chunk: (chunk) => {
        state.output += chunk.text;
        draw();
      },
      end: () => {
        source.close();
        loadOutput(swarm, taskId);
      },
    });
    state.taskStreams.push(source);
  }

  async function loadOutput(swarm, taskId) {
    try {
      const output = await api(`/swarms/${encodeURIComponent(swarm)}/tasks/${encodeURIComponent(taskId)}/output`);
      if (state.taskId === taskId && output.output) state.output = output.output;
      const detail = await api(`/swarms/${encodeURIComponent(swarm)}/tasks/${encodeURIComponent(taskId)}`);
      if (state.taskId === taskId) state.detail = detail;
    } catch (error) {
      // the page keeps what it has
    }
    draw();
  }

  function field(label, value) {
    if (value === null || value === undefined || value === "") return null;
    return [h("dt", { text: label }), h("dd", {}, value)];
  }

  function renderTask() {
    const task = state.detail;
    if (!task) return h("p", { class: "empty", text: "Loading…" });
    if (task.missing) return h("p", { class: "empty", text: task.missing });
    const outcome = task.outcome || {};
    const usage = outcome.usage || null;
    const integration = task.integration || {};
    const total = task.usage && task.usage.output_tokens ? task.usage : usage; // all attempts
    const tokens = total ? `${count(total.input_tokens + total.cache_read_input_tokens + total.cache_creation_input_tokens)} in / ${count(total.output_tokens)} out` : null;
    const live = state.board && state.board.tasks.get(task.id);
    return h(
      "article",
      { class: "task-view", "data-task-page": task.id, "data-status": task.status },
      h("p", { class: "back" }, h("a", { href: href(state.swarm, "board"), text: "← board" })),
      h("h1", {}, task.title, " ", h("span", { class: `badge st-${task.status}`, "data-field": "status", text: task.status })),
      h(
        "dl",
        { class: "facts" },
        field("id", h("code", { text: task.id })),
        field("priority", task.priority),
        field("tags", task.tags.join(", ")),
        field("runtime", task.runtime),
        field("agent", task.agent),
        field("cancelled by", task.cancelled_by),
        field("attempt", String(task.attempt)),
        field("depends on", task.depends.length ? task.depends.map((d) => h("a", { href: href(state.swarm, "task", d), text: `${d} ` })) : null),
        field("cost", task.cost_usd ? money(task.cost_usd) : null),
        field("tokens", tokens),
        field("turns", outcome.turns ? String(outcome.turns) : null),
        field("branch", integration.branch ? h("code", { text: integration.branch }) : null),
        field("landed", integration.landed ? h("code", { "data-field": "landed", text: shortCommit(integration.landed) }) : integration.state || null),
        field("created", when(task.created_at)),
        field("finished", when(task.finished_at)),
      ),
      untakeable(task.id) ? h("p", { class: "warning", "data-field": "warning", text: `⚠ ${untakeable(task.id)}` }) : null,
      task.reason ? h("section", { class: "reason-box", "data-field": "reason" }, h("h2", { text: task.status === "requeued" ? "Requeued because" : "Reason" }), h("pre", { text: task.reason })) : null,
      h("section", {}, h("h2", { text: "Prompt" }), h("pre", { class: "prompt", text: task.prompt })),
      outcome.result ? h("section", {}, h("h2", { text: "Result" }), h("pre", { class: "result", "data-field": "result", text: outcome.result })) : null,
      h("section", {}, h("h2", {}, "Output", (live || task).status === "running" ? h("span", { class: "pulse", text: " live" }) : null), h("pre", { class: "output", "data-field": "output", text: state.output || (["completed", "failed", "cancelled"].includes(task.status) ? "(none)" : "(none yet)") })),
      h(
        "section",
        {},
        h("h2", { text: "History" }),
        h(
          "table",
          { class: "history" },
          h("thead", {}, h("tr", {}, h("th", { text: "#" }), h("th", { text: "event" }), h("th", { text: "when" }), h("th", { text: "by" }), h("th", { text: "details" }))),
          h("tbody", {}, task.events.map((e) => h("tr", { "data-event": e.type }, h("td", { text: e.seq }), h("td", { text: e.type }), h("td", { text: when(e.time) }), h("td", { text: e.actor || "" }), h("td", { class: "details", text: eventDetails(e) })))),
        ),
      ),
    );
  }

  function eventDetails(e) {
    const parts = [];
    if (e.agent) parts.push(`agent ${e.agent}`);
    if (e.attempt) parts.push(`attempt ${e.attempt}`);
    if (e.reason) parts.push(e.reason);
    if (e.outcome && e.outcome.cost_usd) parts.push(money(e.outcome.cost_usd));
    if (e.landed) parts.push(`landed ${shortCommit(e.landed)}`);
    return parts.join(" · ");
  }

  // --- replay --------------------------------------------------------------------------

  let replayTimer = null;
  function onSlide() {
    const slider = document.getElementById("replay-at");
    const at = Number(slider.value);
    clearTimeout(replayTimer);
    if (!state.board || at >= state.board.seq) {
      state.replay = null;
      draw();
      return;
    }
    document.getElementById("replay-label").textContent = `at #${at}…`;
    replayTimer = setTimeout(async () => {
      try {
        const past = await api(`/swarms/${encodeURIComponent(state.swarm)}/board?at=${at}&per_status=${PER_STATUS}`);
        const tasks = (past.tasks || []).map((t) => ({ ...t, tokens: null }));
        state.replay = {
          seq: past.seq,
          time: past.time,
          swarm: past.swarm ? { ...past.swarm, counts: past.counts } : null,
          counts: past.counts,
          tasks: new Map(tasks.map((t) => [t.id, t])),
          agents: past.agents,
          project: past.project,
        };
      } catch (error) {
        state.replay = null;
      }
      draw();
    }, 120);
  }

  // --- routing -------------------------------------------------------------------------

  function parseHash() {
    const parts = window.location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    return { swarm: parts[0] || null, view: parts[1] || "board", task: parts[1] === "task" ? parts[2] : null };
  }

  async function route() {
    const wanted = parseHash();
    if (!wanted.swarm) {
      const preferred = state.swarms.find((s) => s.id === "default") || state.swarms[0];
      if (preferred) {
        window.location.replace(href(preferred.id, "board"));
        return;
      }
    }
    const swarmChanged = wanted.swarm !== state.swarm;
    state.swarm = wanted.swarm;
    state.view = ["graph", "chat", "task"].includes(wanted.view) ? wanted.view : "board";
    state.taskId = wanted.task;
    if (swarmChanged && state.swarm) connect(state.swarm);
    if (state.view === "task") openTask(state.swarm, state.taskId);
    else closeAll(state.taskStreams);
    draw();
  }

  async function start() {
    document.getElementById("swarm-switch").addEventListener("focus", async () => {
      try {
        state.swarms = await api("/swarms"); // swarms created since the page opened
        renderNav();
      } catch (error) {
        // keep the list it has
      }
    });
    document.getElementById("swarm-switch").addEventListener("change", (event) => {
      window.location.hash = href(event.target.value, state.view === "task" ? "board" : state.view);
    });
    document.getElementById("replay-at").addEventListener("input", onSlide);
    document.getElementById("replay-live").addEventListener("click", () => {
      state.replay = null;
      draw();
    });
    window.addEventListener("hashchange", route);
    setInterval(() => {
      if (state.view === "board" || state.view === "chat") draw(); // ages move on
    }, 15000);
    try {
      state.swarms = await api("/swarms");
    } catch (error) {
      setLive("gone", error.message);
      state.swarms = [];
    }
    await route();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
