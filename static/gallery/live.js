// Live updates: listens on /ws/events/, dispatches each message as a "chipmunk:event" DOM event
// (the timeline, static/gallery/timeline.js, updates itself from them), and refreshes the tile
// of a server-rendered grid (#grid) when a page has one, so an open page never needs a reload.
(function () {
  "use strict";
  // The no-JS grid (#grid) is refreshed here; other pages listen to the chipmunk:event
  // events this dispatches for every message.
  const grid = document.getElementById("grid");
  if (!window.WebSocket) return;

  // The tile's markup is the server's (templates/gallery/_tile.html): one template for the
  // first render and every live update.
  function tile(html) {
    const holder = document.createElement("template");
    holder.innerHTML = html.trim();
    return holder.content.firstElementChild;
  }

  // Events for one media come in bursts (created, processing, ready); their fetches may
  // finish out of order, so only the newest fetch per media may touch the page.
  const latest = new Map();

  const counter = document.getElementById("count");
  function count(change) {
    if (!counter) return;
    const n = Math.max(0, Number(counter.dataset.count || 0) + change);
    counter.dataset.count = String(n);
    counter.textContent = `${n} item${n === 1 ? "" : "s"}`;
  }

  function find(id) {
    return grid.querySelector(`[data-id="${CSS.escape(id)}"]`);
  }

  async function refresh(id, removed) {
    if (!grid) return;
    const ticket = (latest.get(id) || 0) + 1;
    latest.set(id, ticket);
    if (removed) {
      const old = find(id);
      if (old) {
        old.remove();
        count(-1);
      }
      return;
    }
    const response = await fetch(`${grid.dataset.tileUrl}${encodeURIComponent(id)}/`, {credentials: "same-origin"});
    if (!response.ok || latest.get(id) !== ticket) return;
    const html = await response.text();
    if (latest.get(id) !== ticket) return;
    const fresh = tile(html);
    const old = find(id);
    if (old) {
      old.replaceWith(fresh);
    } else {
      const empty = grid.querySelector(".empty");
      if (empty) empty.remove();
      grid.prepend(fresh);
      count(+1);
    }
  }

  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/events/`);
    socket.onopen = () => { delay = 1000; };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.media_id) refresh(data.media_id, data.event === "media.deleted");
      document.dispatchEvent(new CustomEvent("chipmunk:event", {detail: data}));
    };
    socket.onclose = () => {
      // Reconnect with backoff: the server may be restarting.
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
