// Switchboard chat: the browser side. Plain JavaScript, no build step, no dependencies.
//
// Protocol (see ChatHandler.swift): the page sends "join\nROOM\nNAME\nSINCE" and "say\nTEXT";
// the server sends JSON: history (the answer to a join), message, presence, error.
//
// Recovery: every message carries its room offset (1, 2, 3...). The page remembers the last
// offset it showed; after a reconnect it joins with SINCE = that offset and gets exactly what
// it missed, in order (or reset: true when the room's history no longer reaches back that far).
// Live messages that arrive while the history answer is on its way are held, then shown after
// it; offsets already shown are dropped, so nothing appears twice.
//
// Every piece of text from the network goes into the page with textContent, never as HTML.
(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const ui = {
    app: $('app'), menuToggle: $('menu-toggle'), title: $('room-title'), subtitle: $('room-subtitle'),
    status: $('status'), sidebar: $('sidebar'), roomList: $('room-list'), roomForm: $('room-form'),
    roomInput: $('room-input'), memberCount: $('member-count'), memberList: $('member-list'),
    welcome: $('welcome'), joinForm: $('join-form'), nameInput: $('name-input'), joinRoomInput: $('join-room-input'),
    messages: $('messages'), composer: $('composer'), textInput: $('text-input'), sendButton: $('send-button'),
  };

  const state = {
    name: localStorage.getItem('chat.name') || '',
    room: null,
    socket: null,
    status: 'offline',
    lastOffset: 0,          // the last offset shown in the current room (0: none yet)
    syncing: false,         // a join was sent; its history answer has not arrived
    held: [],               // live messages received while syncing
    reconnectDelay: 500,
    reconnectTimer: null,
    offlineByHand: false,   // the test hook (or a person) took the page offline
    lastShown: null,        // {name, time} of the last message, to group a sender's run
    membersVersion: 0,      // the version of the member list shown
    recentRooms: JSON.parse(localStorage.getItem('chat.rooms') || '[]').filter((r) => typeof r === 'string'),
  };

  // ---- Connection -------------------------------------------------------------------------

  function connect() {
    clearTimeout(state.reconnectTimer);
    if (state.socket && state.socket.readyState <= WebSocket.OPEN) return;
    setStatus('connecting');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/ws`);
    state.socket = socket;
    socket.onopen = () => {
      if (socket !== state.socket) return;
      state.reconnectDelay = 500;
      setStatus('online');
      if (state.room) sendJoin();
    };
    socket.onmessage = (event) => {
      if (socket !== state.socket) return;
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      receive(message);
    };
    socket.onclose = () => {
      if (socket !== state.socket) return;
      state.socket = null;
      setStatus('offline');
      if (!state.offlineByHand) scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    // Exponential backoff with jitter, so a restarted server is not hit by everyone at once.
    const delay = state.reconnectDelay * (0.75 + Math.random() * 0.5);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function send(text) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
    state.socket.send(text);
    return true;
  }

  function sendJoin() {
    state.syncing = true;
    state.held = [];
    state.membersVersion = 0;  // a restarted server counts from 0 again; the answer sets it
    send(`join\n${state.room}\n${state.name}\n${state.lastOffset > 0 ? state.lastOffset : ''}`);
  }

  // ---- From the server ----------------------------------------------------------------------

  function receive(message) {
    switch (message.type) {
      case 'history': return receiveHistory(message);
      case 'message':
        if (message.room !== state.room) return;
        if (state.syncing) { state.held.push(message); return; }
        return showLive(message);
      case 'presence':
        if (message.room === state.room) showMembers(message.members, message.version);
        return;
      case 'error':
        return showNotice(String(message.text));
    }
  }

  function receiveHistory(history) {
    if (history.room !== state.room) return;
    const wasAway = state.lastOffset > 0;
    if (history.reset) {
      // The room's history no longer reaches back to what we had (or the server restarted):
      // start over from what it holds.
      clearMessages();
      state.lastOffset = 0;
      if (wasAway) showNotice('You were away for a while: older messages are no longer available.');
    }
    let recovered = 0;
    for (const m of history.messages) {
      if (m.offset <= state.lastOffset) continue;
      showMessage(m);
      recovered += 1;
    }
    if (wasAway && !history.reset && recovered > 0) {
      showNotice(`${recovered} message${recovered === 1 ? '' : 's'} while you were away (above)`);
    }
    if (history.latest > state.lastOffset && history.messages.length === 0) state.lastOffset = history.latest;
    showMembers(history.members, history.version);
    state.syncing = false;
    const held = state.held.sort((a, b) => a.offset - b.offset);
    state.held = [];
    for (const m of held) showLive(m);
    updateComposer();
  }

  function showLive(m) {
    if (m.offset <= state.lastOffset) return;                 // already shown (history and live overlap)
    if (state.lastOffset > 0 && m.offset > state.lastOffset + 1) {
      // A gap (a message was not delivered live): ask for what is missing, hold this one.
      sendJoin();
      state.held = [m];
      return;
    }
    showMessage(m);
  }

  // ---- Rendering (textContent only) ---------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const palette = ['#e8590c', '#2f9e44', '#1c7ed6', '#ae3ec9', '#f08c00', '#0c8599', '#d6336c', '#5f3dc4'];
  function colorFor(name) {
    let h = 2166136261;
    for (const c of name) h = Math.imul(h ^ c.codePointAt(0), 16777619) >>> 0;  // FNV-1a
    return palette[(h >>> 3) % palette.length];  // the low bits of FNV-1a mix poorly
  }

  function avatar(name) {
    // Initials: the first letters of the first two words ("Ada Lovelace" -> "AL", "grace" -> "G").
    const initials = name.trim().split(/\s+/).slice(0, 2).map((word) => [...word][0] || '').join('');
    const node = el('span', 'avatar', initials.toUpperCase());
    node.style.background = colorFor(name);
    node.setAttribute('aria-hidden', 'true');
    return node;
  }

  function timeText(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function nearBottom() {
    const list = ui.messages;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function append(node) {
    const stick = nearBottom();
    ui.messages.appendChild(node);
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function showMessage(m) {
    const name = String(m.name), text = String(m.text);
    const mine = name === state.name;
    const continued = state.lastShown && state.lastShown.name === name && m.time - state.lastShown.time < 5 * 60 * 1000;
    const item = el('li', `message${mine ? ' mine' : ''}${continued ? ' continued' : ''}`);
    item.dataset.offset = String(m.offset);
    item.appendChild(avatar(name));
    const body = el('div', 'body');
    if (!continued) {
      const meta = el('div', 'meta');
      meta.appendChild(el('span', 'who', mine ? 'You' : name));
      meta.appendChild(el('time', 'when', timeText(m.time)));
      body.appendChild(meta);
    }
    body.appendChild(el('div', 'bubble', text));
    item.appendChild(body);
    append(item);
    state.lastOffset = Math.max(state.lastOffset, m.offset);
    state.lastShown = { name, time: m.time };
  }

  function showNotice(text) {
    append(el('li', 'notice', text));
    state.lastShown = null;
  }

  function clearMessages() {
    ui.messages.replaceChildren();
    state.lastShown = null;
  }

  function showMembers(members, version) {
    // The list comes by two paths that may overtake each other: keep the newest.
    if (typeof version === 'number') {
      if (version < state.membersVersion) return;
      state.membersVersion = version;
    }
    const names = Array.isArray(members) ? members.map(String) : [];
    ui.memberList.replaceChildren(...names.map((name) => {
      const item = el('li');
      item.appendChild(avatar(name));
      item.appendChild(el('span', '', name === state.name ? `${name} (you)` : name));
      return item;
    }));
    ui.memberCount.textContent = String(names.length);
    ui.subtitle.textContent = names.length === 1 ? 'Only you here' : `${names.length} people here`;
  }

  function showRooms() {
    ui.roomList.replaceChildren(...state.recentRooms.map((room) => {
      const item = el('li');
      const button = el('button', room === state.room ? 'active' : '', `# ${room}`);
      button.type = 'button';
      button.addEventListener('click', () => { enterRoom(room); closeMenu(); });
      item.appendChild(button);
      return item;
    }));
  }

  function setStatus(status) {
    state.status = status;
    ui.status.className = `status status-${status}`;
    ui.status.textContent = status === 'online' ? 'online' : status === 'connecting' ? 'connecting…' : 'offline';
    updateComposer();
  }

  function updateComposer() {
    const ready = state.status === 'online' && !state.syncing;
    ui.sendButton.disabled = !ready;
    ui.textInput.placeholder = state.status === 'online' ? 'Write a message…' : 'Reconnecting… you will get what you missed';
  }

  // ---- Rooms and the composer ---------------------------------------------------------------

  function enterRoom(room) {
    room = room.trim();
    if (!room || room === state.room) return;
    state.room = room;
    state.lastOffset = 0;
    state.membersVersion = 0;
    clearMessages();
    showMembers([]);
    state.recentRooms = [room, ...state.recentRooms.filter((r) => r !== room)].slice(0, 8);
    localStorage.setItem('chat.rooms', JSON.stringify(state.recentRooms));
    ui.title.textContent = `# ${room}`;
    document.title = `#${room} · Switchboard chat`;
    history.replaceState(null, '', `#${encodeURIComponent(room)}`);
    ui.welcome.hidden = true;
    ui.messages.hidden = false;
    ui.composer.hidden = false;
    showRooms();
    if (state.status === 'online') sendJoin(); else connect();
    ui.textInput.focus();
  }

  function submitMessage() {
    const text = ui.textInput.value.trim();
    if (!text || ui.sendButton.disabled) return;
    if (send(`say\n${text}`)) {
      ui.textInput.value = '';
      autoSize();
    }
  }

  function autoSize() {
    ui.textInput.style.height = 'auto';
    ui.textInput.style.height = `${Math.min(ui.textInput.scrollHeight + 2, 140)}px`;
  }

  function closeMenu() {
    ui.app.classList.remove('menu-open');
    ui.menuToggle.setAttribute('aria-expanded', 'false');
  }

  ui.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = ui.nameInput.value.trim();
    if (!name) return;
    state.name = name;
    localStorage.setItem('chat.name', name);
    enterRoom(ui.joinRoomInput.value);
  });
  ui.roomForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!state.name) { ui.nameInput.focus(); return; }
    enterRoom(ui.roomInput.value);
    ui.roomInput.value = '';
    closeMenu();
  });
  ui.composer.addEventListener('submit', (event) => { event.preventDefault(); submitMessage(); });
  ui.textInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) { event.preventDefault(); submitMessage(); }
  });
  ui.textInput.addEventListener('input', autoSize);
  ui.menuToggle.addEventListener('click', () => {
    const open = ui.app.classList.toggle('menu-open');
    ui.menuToggle.setAttribute('aria-expanded', String(open));
  });
  // On a phone the drawer closes when the conversation is touched.
  document.querySelector('.main').addEventListener('click', () => { if (ui.app.classList.contains('menu-open')) closeMenu(); });
  window.addEventListener('online', () => { if (!state.offlineByHand) connect(); });

  // ---- Start --------------------------------------------------------------------------------

  ui.nameInput.value = state.name;
  const hashRoom = decodeURIComponent(location.hash.slice(1));
  if (hashRoom) ui.joinRoomInput.value = hashRoom;
  showRooms();
  connect();
  if (state.name && hashRoom) enterRoom(hashRoom);

  // For the browser test (and the curious): drop the socket and keep it down, then come back.
  window.__chat = {
    get socket() { return state.socket; },
    get status() { return state.status; },
    get syncing() { return state.syncing; },
    get lastOffset() { return state.lastOffset; },
    goOffline() { state.offlineByHand = true; clearTimeout(state.reconnectTimer); if (state.socket) state.socket.close(); },
    goOnline() { state.offlineByHand = false; connect(); },
    texts() { return [...ui.messages.querySelectorAll('.message .bubble')].map((b) => b.textContent); },
    offsets() { return [...ui.messages.querySelectorAll('.message')].map((m) => Number(m.dataset.offset)); },
    hacked: false,
  };
})();
