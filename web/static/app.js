// app.js — chatgate's web app: accounts, friends with presence, 1:1 and group
// chats with history, unread counts and typing, message search with jumps
// into history, and mentions, on top of chatgate.js.
//
// User data (names, message text) reaches the page only through textContent
// and attribute values, never as HTML.

import {Client, APIError, compareIDs, newClientMsgID, TRANSPORTS} from './chatgate.js';

const $ = (id) => document.getElementById(id);

/** el builds an element: el('li', {class: 'x', text: 'y', data: {id: 1}, on: {click: f}}, ...children). */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) { if (dv !== undefined && dv !== null) e.dataset[dk] = dv; }
    else if (k === 'on') for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

const params = new URLSearchParams(location.search);
const client = new Client();

const state = {
  conn: null,
  users: new Map(), // id → user object (friends carry status and last_active_at)
  friendIDs: new Set(),
  incoming: [],
  outgoing: [],
  convs: new Map(), // conversation id → conversation (as GET /v1/conversations gives it)
  groups: new Map(), // group id → group (members once a detail was read)
  groupsLoaded: false,
  open: null, // the open conversation: {id?, kind, peer_id?, group_id?}
  msgEls: new Map(), // message id → <li> of the open conversation
  pending: new Map(), // client_msg_id → {li, input} of sends not yet stored
  oldest: null,
  hasMore: false, // older messages than the oldest shown remain
  newest: null, // the newest message id shown
  hasNewer: false, // newer messages than the newest shown remain (after a jump)
  typing: new Map(), // user id → timer, typing in the open conversation
  lastTypingSent: 0,
  timers: [],
};
window.chatgateApp = {client, state}; // for tests and debugging

// ---- settings ----

/** The forced transport: ?transport= in the URL, else the saved setting, else '' (auto). */
function forcedTransport() {
  const t = params.get('transport') || localStorage.getItem('chatgate.transport') || '';
  return TRANSPORTS.includes(t) ? t : '';
}

// ---- auth screen ----

let signupMode = false;

function showAuth(message = '') {
  stopMain();
  $('main').hidden = true;
  $('auth').hidden = false;
  $('auth-error').textContent = message;
  setSignupMode(signupMode);
}

function setSignupMode(on) {
  signupMode = on;
  $('tab-login').classList.toggle('active', !on);
  $('tab-signup').classList.toggle('active', on);
  $('auth-display-row').hidden = !on;
  $('auth-submit').textContent = on ? 'Sign up' : 'Log in';
  $('auth-password').autocomplete = on ? 'new-password' : 'current-password';
}

$('tab-login').addEventListener('click', () => setSignupMode(false));
$('tab-signup').addEventListener('click', () => setSignupMode(true));
$('auth-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const username = $('auth-username').value.trim();
  const password = $('auth-password').value;
  $('auth-error').textContent = '';
  $('auth-submit').disabled = true;
  try {
    if (signupMode) await client.signup({username, password, display_name: $('auth-display').value.trim(), device: deviceName()});
    else await client.login(username, password, deviceName());
    $('auth-password').value = '';
    await startMain();
  } catch (err) {
    $('auth-error').textContent = err.message;
  } finally {
    $('auth-submit').disabled = false;
  }
});

function deviceName() {
  const ua = navigator.userAgent;
  const browser = /Firefox\//.test(ua) ? 'Firefox' : /Edg\//.test(ua) ? 'Edge' : /Chrom/.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
  return `${browser} (web)`;
}

// ---- main screen ----

async function startMain() {
  try {
    client.updateUser(await client.api('GET', '/v1/me'));
  } catch (err) {
    if (err instanceof APIError && err.status === 401) {
      client.forget();
      showAuth('Your session has ended. Please log in again.');
      return;
    }
    // Offline or a server error: carry on with what we know; the connection retries.
  }
  const me = client.user;
  state.users.set(me.id, me);
  $('auth').hidden = true;
  $('main').hidden = false;
  $('me-name').textContent = me.display_name;
  $('me-username').textContent = `@${me.username}`;
  $('transport-select').value = forcedTransport();
  connect();
  state.timers.push(setInterval(refreshFriends, 10000), setInterval(renderFriends, 30000));
  await Promise.all([refreshFriends(), refreshGroups(), refreshConversations()]);
}

function stopMain() {
  state.conn?.close();
  state.conn = null;
  state.timers.forEach(clearInterval);
  state.timers = [];
  Object.assign(state, {open: null, groupsLoaded: false, oldest: null, hasMore: false, newest: null, hasNewer: false});
  for (const k of ['users', 'convs', 'groups', 'msgEls', 'pending']) state[k].clear();
  state.friendIDs.clear();
  searchResults = [];
  find = null;
  mentions = newMentions();
  $('find-input').value = '';
  $('find-results').replaceChildren();
  $('mentions-list').replaceChildren();
  $('mentions-count').hidden = true;
  showPanel('chats');
  $('conversations').replaceChildren();
  $('messages').replaceChildren();
  $('friends').replaceChildren();
  $('incoming').replaceChildren();
  $('outgoing').replaceChildren();
  $('search-results').replaceChildren();
  closeChat();
}

function connect() {
  state.conn?.close();
  const conn = client.connect({
    transport: forcedTransport() || undefined,
    zone: params.get('zone') || undefined, // a cluster recommends a node of this zone first
    onEvent,
    onState: (s) => {
      if (conn !== state.conn) return;
      renderBadge(s);
      if (s.fatal) {
        client.forget();
        showAuth('Your session has ended. Please log in again.');
      } else if (s.connected) {
        refreshFriends(); // presence events are lost while disconnected
      }
    },
    onError: (e) => console.debug('chatgate:', e.message),
  });
  state.conn = conn;
}

function renderBadge(s) {
  const st = s.connected ? 'up' : s.connecting ? 'connecting' : 'down';
  for (const b of document.querySelectorAll('.badge.transport')) {
    b.textContent = s.transport || '…';
    b.dataset.transport = s.transport || '';
    b.dataset.state = st;
    b.title = `transport: ${s.transport} (${st === 'up' ? 'connected' : st})`;
  }
}

$('transport-select').addEventListener('change', (e) => {
  localStorage.setItem('chatgate.transport', e.target.value);
  if (params.has('transport')) {
    params.delete('transport');
    history.replaceState(null, '', `${location.pathname}${params.size ? '?' + params : ''}`);
  }
  connect();
});

$('logout').addEventListener('click', async () => {
  state.conn?.close();
  try {
    await client.logout();
  } catch { /* the token is forgotten either way */ }
  showAuth();
});

$('show-chats').addEventListener('click', () => showPanel('chats'));
$('show-friends').addEventListener('click', () => showPanel('friends'));
$('show-mentions').addEventListener('click', () => showPanel('mentions'));

/** Shows one of the sidebar's panels: chats, friends, mentions or find (search results, no tab). */
function showPanel(which) {
  for (const p of ['chats', 'friends', 'mentions', 'find']) $(`${p}-panel`).hidden = which !== p;
  for (const p of ['chats', 'friends', 'mentions']) $(`show-${p}`).classList.toggle('active', which === p);
  if (which === 'friends') refreshFriends();
  if (which === 'mentions') loadMentions();
}

window.addEventListener('focus', () => {
  if (state.conn) {
    refreshFriends();
    markRead();
  }
});

// ---- events ----

function onEvent(ev) {
  switch (ev.type) {
    case 'message': onMessage(ev.message); break;
    case 'presence': onPresence(ev); break;
    case 'typing': onTyping(ev); break;
    default: break; // types this app does not know are ignored
  }
}

// Presence events newer than a friends list being read win over it.
let presenceCount = 0;
const presenceAt = new Map(); // user id → presenceCount at its latest event

function onPresence(ev) {
  presenceAt.set(ev.user_id, ++presenceCount);
  const u = state.users.get(ev.user_id);
  if (!u || !state.friendIDs.has(ev.user_id)) {
    refreshFriends(); // a friendship just formed
    return;
  }
  u.status = ev.status;
  u.last_active_at = ev.last_active_at;
  renderFriends();
  renderConversations();
  renderChatHeader();
}

function onTyping(ev) {
  const me = client.user;
  if (ev.user_id === me.id || !state.open || state.open.id !== ev.conversation_id) return;
  clearTimeout(state.typing.get(ev.user_id));
  state.typing.set(ev.user_id, setTimeout(() => {
    state.typing.delete(ev.user_id);
    renderTyping();
  }, 4000));
  ensureUser(ev.user_id);
  renderTyping();
}

function renderTyping() {
  const names = [...state.typing.keys()].map(nameOf);
  $('typing').textContent = names.length === 0 ? ''
    : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
}

function onMessage(m) {
  const me = client.user;
  let c = state.convs.get(m.conversation_id);
  if (!c) {
    c = m.group_id
      ? {id: m.conversation_id, kind: 'group', group_id: m.group_id, unread_count: 0}
      : {id: m.conversation_id, kind: 'direct', peer_id: m.from === me.id ? m.to : m.from, unread_count: 0};
    state.convs.set(c.id, c);
    if (m.group_id && !state.groups.has(m.group_id)) refreshGroups();
  }
  const newest = !c.last_message || compareIDs(m.id, c.last_message.id) > 0;
  if (newest) c.last_message = m;
  const o = state.open;
  if (o && !o.id && o.kind === 'direct' && c.kind === 'direct' && c.peer_id === o.peer_id) {
    o.id = c.id; // a draft 1:1 got its id
    renderFindScope();
  }
  const isOpen = o && o.id === m.conversation_id;
  if (isOpen) {
    if (state.typing.has(m.from)) {
      clearTimeout(state.typing.get(m.from));
      state.typing.delete(m.from);
      renderTyping();
    }
  }
  if (isOpen && o.atLatest) {
    addMessage(m);
    markRead();
  } else {
    if (isOpen) {
      // Looking at older history (after a jump): appending here would put
      // the message in the wrong place. Kept for when the view reaches the
      // newest messages; "Jump to latest" offers the way there.
      if (o.missed.length < 1000) o.missed.push(m);
      else o.missedTooMany = true;
      renderNewer();
    }
    if (m.from !== me.id && newest && (!c.read_up_to || compareIDs(m.id, c.read_up_to) > 0)) {
      c.unread_count = (c.unread_count || 0) + 1;
    }
  }
  if (m.from !== me.id && m.mentions?.includes(me.id)) onMention(m);
  ensureUser(m.from);
  renderConversations();
}

// ---- friends ----

let friendsLoading = null;

function refreshFriends() {
  if (!client.token) return Promise.resolve();
  friendsLoading ??= (async () => {
    try {
      const since = presenceCount;
      const fl = await client.api('GET', '/v1/friends');
      for (const u of fl.friends) {
        const old = state.users.get(u.id);
        if (old?.status && (presenceAt.get(u.id) || 0) > since) Object.assign(u, {status: old.status, last_active_at: old.last_active_at});
      }
      state.friendIDs = new Set(fl.friends.map((u) => u.id));
      for (const u of [...fl.friends, ...fl.incoming, ...fl.outgoing]) state.users.set(u.id, u);
      state.incoming = fl.incoming;
      state.outgoing = fl.outgoing;
      renderFriends();
      renderConversations();
      renderChatHeader();
    } catch (err) {
      console.debug('friends:', err.message);
    } finally {
      friendsLoading = null;
    }
  })();
  return friendsLoading;
}

function presenceDot(u) {
  const known = u && state.friendIDs.has(u.id) && u.status;
  return el('span', {class: `dot ${known ? u.status : 'unknown'}`, title: known ? u.status : ''});
}

function lastSeen(u) {
  if (!u || !state.friendIDs.has(u.id)) return '';
  if (u.status === 'online') return 'online';
  if (!u.last_active_at) return 'offline';
  return `last seen ${ago(new Date(u.last_active_at))}`;
}

function ago(t) {
  const s = Math.max(0, (Date.now() - t.getTime()) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return t.toLocaleDateString();
}

function renderFriends() {
  const friends = [...state.friendIDs].map((id) => state.users.get(id)).filter(Boolean)
    .sort((a, b) => (a.status === b.status ? a.display_name.localeCompare(b.display_name) : a.status === 'online' ? -1 : 1));
  $('friends').replaceChildren(...friends.map((u) => el('li', {class: 'friend clickable', data: {userId: u.id, username: u.username, status: u.status}, on: {click: () => openDirect(u.id)}},
    presenceDot(u),
    el('div', {class: 'grow'}, el('div', {class: 'name', text: u.display_name}), el('div', {class: 'muted small last-seen', text: lastSeen(u)})),
  )));
  if (!friends.length) $('friends').append(el('li', {class: 'muted empty', text: 'No friends yet: find people above.'}));
  $('incoming').replaceChildren(...state.incoming.map((u) => el('li', {class: 'request', data: {userId: u.id, username: u.username}},
    el('div', {class: 'grow'}, el('div', {class: 'name', text: u.display_name}), el('div', {class: 'muted small', text: `@${u.username} wants to be friends`})),
    el('button', {type: 'button', class: 'primary accept', text: 'Accept', on: {click: () => friendAction('PUT', u.id)}}),
    el('button', {type: 'button', class: 'decline', text: 'Decline', on: {click: () => friendAction('DELETE', u.id)}}),
  )));
  $('outgoing').replaceChildren(...state.outgoing.map((u) => el('li', {class: 'request', data: {userId: u.id, username: u.username}},
    el('div', {class: 'grow'}, el('div', {class: 'name', text: u.display_name}), el('div', {class: 'muted small', text: 'request sent'})),
    el('button', {type: 'button', text: 'Cancel', on: {click: () => friendAction('DELETE', u.id)}}),
  )));
  const n = state.incoming.length;
  $('incoming-count').hidden = n === 0;
  $('incoming-count').textContent = String(n);
}

async function friendAction(method, id) {
  try {
    await client.api(method, `/v1/friends/${id}`);
  } catch (err) {
    alertError(err);
  }
  await refreshFriends();
  renderSearch();
}

$('refresh-friends').addEventListener('click', () => refreshFriends());

let searchResults = [];

$('search-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const q = $('user-search').value.trim();
  if (!q) return;
  try {
    searchResults = (await client.api('GET', `/v1/users?q=${encodeURIComponent(q)}`)).users;
  } catch (err) {
    searchResults = [];
    alertError(err);
  }
  for (const u of searchResults) if (!state.users.has(u.id)) state.users.set(u.id, u);
  renderSearch();
});

function renderSearch() {
  const me = client.user;
  const inc = new Set(state.incoming.map((u) => u.id));
  const out = new Set(state.outgoing.map((u) => u.id));
  $('search-results').replaceChildren(...searchResults.filter((u) => u.id !== me.id).map((u) => {
    let action;
    if (state.friendIDs.has(u.id)) action = el('button', {type: 'button', text: 'Message', on: {click: () => openDirect(u.id)}});
    else if (out.has(u.id)) action = el('span', {class: 'muted small', text: 'requested'});
    else action = el('button', {type: 'button', class: 'primary add-friend', text: inc.has(u.id) ? 'Accept' : 'Add', on: {click: () => friendAction('PUT', u.id)}});
    return el('li', {class: 'result', data: {userId: u.id, username: u.username}},
      el('div', {class: 'grow'}, el('div', {class: 'name', text: u.display_name}), el('div', {class: 'muted small', text: `@${u.username}`})),
      action);
  }));
  if (!searchResults.length) $('search-results').append(el('li', {class: 'muted empty', text: 'Nobody found.'}));
}

// ---- users ----

const fetchingUsers = new Set();

function ensureUser(id) {
  if (!id || state.users.has(id) || fetchingUsers.has(id)) return;
  fetchingUsers.add(id);
  client.api('GET', `/v1/users/${id}`).then((u) => {
    if (!state.users.has(id)) state.users.set(id, u);
    renderConversations();
    renderChatHeader();
    for (const li of $('messages').querySelectorAll(`li[data-from="${id}"] .author`)) li.textContent = u.display_name;
    // Mentions of this user can now be told by their username.
    for (const li of $('messages').querySelectorAll(`li[data-mentions~="${id}"]`)) {
      const m = li.msg;
      if (m) li.querySelector('.text')?.replaceWith(messageText(m));
    }
    renderFinds();
  }).catch(() => {}).finally(() => fetchingUsers.delete(id));
}

function nameOf(id) {
  return state.users.get(id)?.display_name || '…';
}

// ---- conversations ----

async function refreshConversations() {
  try {
    const {conversations} = await client.api('GET', '/v1/conversations');
    for (const c of conversations) {
      const have = state.convs.get(c.id);
      // A live message may be newer than the list: keep it.
      if (have?.last_message && c.last_message && compareIDs(have.last_message.id, c.last_message.id) > 0) continue;
      state.convs.set(c.id, c);
      if (c.kind === 'direct') ensureUser(c.peer_id);
    }
    renderConversations();
    renderFinds();
  } catch (err) {
    console.debug('conversations:', err.message);
  }
}

async function refreshGroups() {
  try {
    const {groups} = await client.api('GET', '/v1/groups');
    for (const g of groups) state.groups.set(g.id, {...state.groups.get(g.id), ...g});
    state.groupsLoaded = true;
    renderConversations();
    renderFinds();
  } catch (err) {
    console.debug('groups:', err.message);
  }
}

/** The sidebar's entries: conversations, plus groups that have no message yet. */
function entries() {
  const list = [];
  const seenGroups = new Set();
  for (const c of state.convs.values()) {
    if (c.kind === 'group') {
      // A group the user has left stays in GET /v1/conversations: hide it.
      if (state.groupsLoaded && !state.groups.has(c.group_id)) continue;
      seenGroups.add(c.group_id);
    }
    list.push({...c, key: c.id, sort: c.last_message?.id || '0'});
  }
  for (const g of state.groups.values()) {
    if (!seenGroups.has(g.id)) list.push({key: `group:${g.id}`, kind: 'group', group_id: g.id, unread_count: 0, sort: g.id});
  }
  return list.sort((a, b) => compareIDs(b.sort, a.sort));
}

function titleOf(c) {
  if (c.kind === 'group') return state.groups.get(c.group_id)?.name || 'Group';
  if (c.peer_id === client.user.id) return `${client.user.display_name} (notes)`;
  return nameOf(c.peer_id);
}

function renderConversations() {
  const me = client.user;
  if (!me) return;
  const list = entries();
  $('no-conversations').hidden = list.length > 0;
  $('conversations').replaceChildren(...list.map((c) => {
    const last = c.last_message;
    const preview = last ? `${last.from === me.id ? 'You: ' : c.kind === 'group' ? nameOf(last.from) + ': ' : ''}${last.content.slice(0, 120)}` : 'No messages yet';
    const unread = c.unread_count > 0 ? (c.unread_count >= 9999 ? '9999+' : String(c.unread_count)) : '';
    const active = state.open && (state.open.id ? state.open.id === c.id : state.open.kind === 'group' ? state.open.group_id === c.group_id : state.open.peer_id === c.peer_id);
    return el('li', {class: `conv clickable${active ? ' active' : ''}`, data: {convId: c.id, groupId: c.group_id, peerId: c.peer_id, unread: c.unread_count || 0}, on: {click: () => openConversation(c)}},
      c.kind === 'group' ? el('span', {class: 'dot group', title: 'group'}) : presenceDot(state.users.get(c.peer_id)),
      el('div', {class: 'grow'}, el('div', {class: 'name', text: titleOf(c)}), el('div', {class: 'muted small preview', text: preview})),
      el('span', {class: 'count unread', text: unread, hidden: !unread}),
    );
  }));
}

function openDirect(userID) {
  const c = [...state.convs.values()].find((x) => x.kind === 'direct' && x.peer_id === userID);
  showPanel('chats');
  openConversation(c || {kind: 'direct', peer_id: userID, unread_count: 0});
}

/**
 * Opens a conversation at its newest messages, or, with around (a message
 * id), at that message with its neighbours: the jump to a search result or
 * a mention. o.atLatest tells whether the newest messages are shown (live
 * messages are appended only then).
 */
async function openConversation(c, {around} = {}) {
  const o = {id: c.id, kind: c.kind, peer_id: c.peer_id, group_id: c.group_id, loading: false, atLatest: !around, missed: [], missedTooMany: false};
  state.open = o;
  state.msgEls.clear();
  state.pending.clear();
  state.oldest = null;
  state.hasMore = false;
  state.newest = null;
  state.hasNewer = false;
  for (const t of state.typing.values()) clearTimeout(t);
  state.typing.clear();
  renderTyping();
  $('messages').replaceChildren();
  $('load-older').hidden = true;
  renderNewer();
  $('composer').hidden = false;
  document.body.classList.add('chat-open');
  renderChatHeader();
  renderConversations();
  if (window.matchMedia('(min-width: 721px)').matches) $('message-input').focus();
  if (o.kind === 'group') {
    await loadGroup(o.group_id);
    if (state.open !== o) return;
    o.id ||= state.groups.get(o.group_id)?.conversation_id;
    renderFindScope();
  }
  if (!o.id) return;
  if (around) await loadAround(o, around);
  else await loadHistory(o);
}

/** Opens the conversation of a search result or mention at message m. */
function jumpTo(convID, m) {
  const o = state.open;
  const li = o?.id === convID ? state.msgEls.get(m.id) : null;
  if (li) {
    // Already on screen: no need to load anything.
    document.body.classList.add('chat-open');
    markJumped(li);
    return;
  }
  openConversation(state.convs.get(convID) || convOf(m), {around: m.id});
}

/** The conversation a message belongs to, as the sidebar would hold it. */
function convOf(m) {
  const me = client.user;
  return m.group_id
    ? {id: m.conversation_id, kind: 'group', group_id: m.group_id, unread_count: 0}
    : {id: m.conversation_id, kind: 'direct', peer_id: m.from === me.id ? m.to : m.from, unread_count: 0};
}

function markJumped(li) {
  for (const e of $('messages').querySelectorAll('li.jumped')) e.classList.remove('jumped');
  li.classList.add('jumped');
  li.scrollIntoView({block: 'center'});
}

/**
 * Loads the messages around message id (GET ...?around=): the jump, or,
 * with newer, the next page towards the present (around the newest shown).
 */
async function loadAround(o, id, {newer = false} = {}) {
  if (o.loading) return;
  o.loading = true;
  let fallback = false;
  try {
    const page = await client.api('GET', `/v1/conversations/${encodeURIComponent(o.id)}/messages?around=${encodeURIComponent(id)}&limit=${newer ? 80 : 50}`);
    if (state.open !== o) return;
    for (const m of page.messages) {
      ensureUser(m.from);
      addMessage(m, {scroll: false});
    }
    if (page.messages.length) {
      const last = page.messages[page.messages.length - 1].id;
      if (!state.oldest || compareIDs(last, state.oldest) < 0) state.oldest = last;
    }
    if (!newer) {
      state.hasMore = page.has_more;
      $('load-older').hidden = !page.has_more;
      const li = state.msgEls.get(id);
      if (li) markJumped(li);
    }
    state.hasNewer = page.has_newer;
    if (!page.has_newer) reachLatest(o);
    renderNewer();
  } catch (err) {
    if (state.open !== o) return;
    console.debug('around:', err.message);
    if (!newer) {
      // Gone (or never there): say so and show the newest messages instead.
      alertError(err);
      fallback = true;
    }
  } finally {
    o.loading = false;
  }
  if (fallback) {
    o.atLatest = true;
    renderNewer();
    await loadHistory(o);
  }
}

/** The view now ends at the newest message: add what arrived meanwhile. */
function reachLatest(o) {
  if (o.atLatest) return;
  if (o.missedTooMany) {
    showLatest();
    return;
  }
  o.atLatest = true;
  state.hasNewer = false;
  for (const m of o.missed) addMessage(m, {scroll: false});
  o.missed = [];
  markRead();
  renderNewer();
}

/** Reloads the open conversation at its newest messages. */
function showLatest() {
  if (state.open) openConversation(state.open);
}

function loadNewer() {
  const o = state.open;
  if (o?.id && state.hasNewer && state.newest && !o.loading) loadAround(o, state.newest, {newer: true});
}

/** Shows the way forward when the newest messages are not on screen. */
function renderNewer() {
  const o = state.open;
  const behind = !!o && !o.atLatest;
  $('load-newer').hidden = !behind || !state.hasNewer;
  $('jump-latest').hidden = !behind;
  const n = behind ? o.missed.length : 0;
  $('jump-new').hidden = n === 0;
  $('jump-new').textContent = o?.missedTooMany ? '999+' : String(n);
}

$('load-newer').addEventListener('click', loadNewer);
$('jump-latest').addEventListener('click', showLatest);

function closeChat() {
  state.open = null;
  document.body.classList.remove('chat-open');
  $('composer').hidden = true;
  $('chat-title').textContent = 'Pick a conversation';
  $('chat-sub').textContent = '';
  $('add-member').hidden = true;
  renderFindScope();
  $('messages').replaceChildren();
  $('typing').textContent = '';
  $('load-older').hidden = true;
}

$('back').addEventListener('click', () => {
  closeChat();
  renderConversations();
});

async function loadGroup(gid) {
  try {
    const d = await client.api('GET', `/v1/groups/${gid}`);
    state.groups.set(gid, d);
    for (const u of d.members) {
      // Group detail shows presence to co-members; friends keep theirs from events.
      if (!state.friendIDs.has(u.id) || !state.users.has(u.id)) state.users.set(u.id, u);
    }
    renderChatHeader();
    renderConversations();
  } catch (err) {
    console.debug('group:', err.message);
  }
}

function renderChatHeader() {
  const o = state.open;
  renderFindScope();
  if (!o) return;
  $('chat-title').textContent = titleOf(o);
  $('add-member').hidden = o.kind !== 'group';
  const sub = $('chat-sub');
  if (o.kind === 'group') {
    // Group detail shows every member's presence snapshot; friends' stay live by events.
    const members = state.groups.get(o.group_id)?.members || [];
    sub.replaceChildren(...members.map((m) => {
      const u = state.friendIDs.has(m.id) ? state.users.get(m.id) || m : m;
      return el('span', {class: 'member', data: {userId: m.id, status: u.status}},
        el('span', {class: `dot ${u.status || 'unknown'}`, title: u.status || ''}),
        document.createTextNode(m.id === client.user.id ? 'you' : u.display_name));
    }));
  } else {
    const u = state.users.get(o.peer_id);
    sub.replaceChildren(presenceDot(u), document.createTextNode(o.peer_id === client.user.id ? 'notes to self' : lastSeen(u) || (u ? `@${u.username}` : '')));
    sub.dataset.status = state.friendIDs.has(o.peer_id) ? u?.status || '' : '';
  }
}

async function loadHistory(o, before) {
  if (o.loading) return;
  o.loading = true;
  try {
    const q = `limit=50${before ? `&before=${before}` : ''}`;
    const page = await client.api('GET', `/v1/conversations/${encodeURIComponent(o.id)}/messages?${q}`);
    if (state.open !== o) return;
    const box = $('messages-box');
    const fromBottom = box.scrollHeight - box.scrollTop;
    for (const m of page.messages) {
      ensureUser(m.from);
      addMessage(m, {scroll: false});
    }
    if (page.messages.length) {
      const last = page.messages[page.messages.length - 1].id;
      if (!state.oldest || compareIDs(last, state.oldest) < 0) state.oldest = last;
    }
    state.hasMore = page.has_more;
    $('load-older').hidden = !page.has_more;
    // Keep what the user looked at in place (the newest page: the bottom).
    box.scrollTop = before ? box.scrollHeight - fromBottom : box.scrollHeight;
    if (!before) markRead();
  } catch (err) {
    console.debug('history:', err.message);
  } finally {
    o.loading = false;
  }
}

function loadOlder() {
  if (state.open?.id && state.hasMore && !state.open.loading) loadHistory(state.open, state.oldest);
}

$('load-older').addEventListener('click', loadOlder);
$('messages-box').addEventListener('scroll', () => {
  const box = $('messages-box');
  if (box.scrollTop < 40) loadOlder();
  else if (box.scrollHeight - box.scrollTop - box.clientHeight < 40) loadNewer();
});

let readTimer = 0;
let readPending = false;

/** Moves the read marker of the open conversation to its newest message (debounced), once that is on screen. */
function markRead() {
  if (state.open && !state.open.atLatest) return;
  clearTimeout(readTimer);
  readPending = true;
  readTimer = setTimeout(sendRead, 150);
}

async function sendRead(keepalive = false) {
  readPending = false;
  const o = state.open;
  const c = o?.id && state.convs.get(o.id);
  if (!c?.last_message || document.visibilityState === 'hidden' && !keepalive) return;
  const id = c.last_message.id;
  if (c.read_up_to && compareIDs(id, c.read_up_to) <= 0 && !c.unread_count) return;
  c.read_up_to = id;
  c.unread_count = 0;
  renderConversations();
  try {
    await client.api('POST', `/v1/conversations/${encodeURIComponent(c.id)}/read`, {message_id: id}, {keepalive});
  } catch (err) {
    console.debug('read:', err.message);
  }
}

// Leaving the page right after a message came in still marks it read.
window.addEventListener('pagehide', () => {
  if (!readPending) return;
  clearTimeout(readTimer);
  sendRead(true);
});

// ---- messages ----

function timeOf(iso) {
  const t = new Date(iso);
  const today = new Date().toDateString() === t.toDateString();
  return today ? t.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'}) : t.toLocaleString([], {dateStyle: 'short', timeStyle: 'short'});
}

function messageLi(m, mine) {
  const li = el('li', {class: `msg${mine ? ' mine' : ''}`, data: {id: m.id, from: m.from, clientMsgId: m.client_msg_id || undefined, mentions: m.mentions?.length ? m.mentions.join(' ') : undefined}},
    el('div', {class: 'meta'},
      el('span', {class: 'author', text: mine ? 'You' : nameOf(m.from)}),
      el('time', {class: 'time', datetime: m.created_at || '', text: m.created_at ? timeOf(m.created_at) : ''})),
    messageText(m));
  li.msg = m;
  return li;
}

/** A bubble's text, with the @username of each mentioned user marked (the caller's own more strongly). */
function messageText(m) {
  const me = client.user;
  const spans = mentionRanges(m.content, m.mentions).map((r) => ({...r, tag: 'span', class: r.id === me.id ? 'mention me' : 'mention'}));
  return el('div', {class: 'text'}, ...fragments(m.content, spans));
}

function nearBottom() {
  const box = $('messages-box');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

/** Shows a message of the open conversation once, in id order. */
function addMessage(m, {scroll = true} = {}) {
  if (state.msgEls.has(m.id)) return;
  const mine = m.from === client.user.id;
  const stick = scroll && (mine || nearBottom());
  const p = mine && m.client_msg_id ? state.pending.get(m.client_msg_id) : null;
  if (p) {
    // Our own send, stored: the pending bubble becomes the message.
    state.pending.delete(m.client_msg_id);
    p.li.remove();
  }
  const li = messageLi(m, mine);
  // In id order, above the bubbles still pending (they have no id yet).
  const list = $('messages');
  let after = list.lastElementChild;
  while (after && (!after.dataset.id || compareIDs(after.dataset.id, m.id) > 0)) after = after.previousElementSibling;
  if (after) after.after(li);
  else list.prepend(li);
  state.msgEls.set(m.id, li);
  if (!state.newest || compareIDs(m.id, state.newest) > 0) state.newest = m.id;
  if (stick) $('messages-box').scrollTop = $('messages-box').scrollHeight;
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  let o = state.open;
  const input = $('message-input');
  const content = input.value;
  if (!o || !content.trim()) return;
  if (!o.atLatest) {
    // Viewing older history: a new message belongs after the newest.
    showLatest();
    o = state.open;
  }
  input.value = '';
  state.lastTypingSent = 0; // the next keystroke is news again
  const msg = o.kind === 'group' ? {group_id: o.group_id, content} : {to: o.peer_id, content};
  msg.client_msg_id = newClientMsgID();
  const li = el('li', {class: 'msg mine pending', data: {clientMsgId: msg.client_msg_id}},
    el('div', {class: 'meta'}, el('span', {class: 'author', text: 'You'}), el('span', {class: 'status', text: 'sending…'})),
    el('div', {class: 'text', text: content}));
  $('messages').append(li);
  $('messages-box').scrollTop = $('messages-box').scrollHeight;
  state.pending.set(msg.client_msg_id, {li, input: msg});
  send(o, msg);
});

async function send(o, msg) {
  const p = state.pending.get(msg.client_msg_id);
  if (!p) return;
  p.li.classList.remove('failed');
  p.li.querySelector('.status').replaceChildren('sending…');
  try {
    const m = await state.conn.send(msg);
    if (!o.id) {
      o.id = m.conversation_id;
      renderFindScope();
      renderConversations();
    }
    if (state.open === o && o.atLatest) addMessage(m);
    onMessage(m);
  } catch (err) {
    if (!state.pending.has(msg.client_msg_id)) return;
    p.li.classList.add('failed');
    p.li.querySelector('.status').replaceChildren(`not sent: ${err.message} `,
      el('button', {type: 'button', class: 'link retry', text: 'Retry', on: {click: () => send(o, msg)}}));
  }
}

$('message-input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});

$('message-input').addEventListener('input', () => {
  const o = state.open;
  if (!o?.id || !state.conn || !$('message-input').value) return;
  if (Date.now() - state.lastTypingSent < 2500) return;
  state.lastTypingSent = Date.now();
  state.conn.typing(o.id);
});

// ---- finding: message search and mentions ----

// Terms as the server makes them (core/search.go): words in spaced scripts,
// runs of Korean, Japanese and Chinese (and Thai, Lao, Khmer, Myanmar) text
// (matched by any substring of two or more characters), case-folded. Used
// only to highlight what matched.

const CJK = /[\p{Script=Han}\p{Script=Hangul}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}ー々〆]/u;
const WORD = /[\p{L}\p{Nd}\p{Mn}]/u;
const LETTER_OR_DIGIT = /[\p{L}\p{Nd}]/u;
const MAX_TERM_BYTES = 64;
const utf8 = new TextEncoder();

/** Lowercases one character, mapping full-width ASCII (Ａ, ｂ, １) to ASCII. */
function fold(ch) {
  const c = ch.codePointAt(0);
  if (c >= 0xff01 && c <= 0xff5e) ch = String.fromCodePoint(c - 0xff01 + 0x21);
  return ch.toLowerCase();
}

/** The words and CJK runs of text: {kind, chars (folded), starts, ends (UTF-16 offsets)}. */
function textRuns(text) {
  const out = [];
  let cur = null;
  let i = 0;
  for (const ch of text) {
    const f = fold(ch);
    const kind = CJK.test(f) ? 'cjk' : WORD.test(f) ? 'word' : '';
    if (cur && cur.kind !== kind) {
      out.push(cur);
      cur = null;
    }
    if (kind) {
      cur ??= {kind, chars: [], starts: [], ends: []};
      cur.chars.push(f);
      cur.starts.push(i);
      cur.ends.push(i + ch.length);
    }
    i += ch.length;
  }
  if (cur) out.push(cur);
  return out;
}

/** A word as the index keeps it: cut to 64 bytes of UTF-8. */
function cutWord(w) {
  if (utf8.encode(w).length <= MAX_TERM_BYTES) return w;
  let out = '', n = 0;
  for (const ch of w) {
    n += utf8.encode(ch).length;
    if (n > MAX_TERM_BYTES) break;
    out += ch;
  }
  return out;
}

/** The parts of a query to highlight: {words: Set of folded words, cjk: [arrays of folded characters]}. */
function queryTerms(q) {
  const words = new Set(), cjk = [];
  for (const r of textRuns(q)) {
    if (r.kind === 'word') words.add(cutWord(r.chars.join('')));
    else cjk.push(r.chars);
  }
  // A lone CJK character counts only when the query has nothing else (as on the server).
  const long = cjk.filter((c) => c.length > 1);
  return {words, cjk: long.length || words.size ? long : cjk};
}

/** The [start, end) ranges of text that terms match, sorted and merged. */
function matchRanges(text, terms) {
  const ranges = [];
  const runs = textRuns(text);
  const occurrences = (needle) => {
    const found = [];
    for (const r of runs) {
      if (r.kind !== 'cjk') continue;
      for (let i = 0; i + needle.length <= r.chars.length; i++) {
        if (needle.every((c, k) => r.chars[i + k] === c)) found.push([r.starts[i], r.ends[i + needle.length - 1]]);
      }
    }
    return found;
  };
  for (const r of runs) {
    if (r.kind === 'word' && terms.words.has(cutWord(r.chars.join('')))) ranges.push([r.starts[0], r.ends[r.ends.length - 1]]);
  }
  for (const t of terms.cjk) {
    let found = occurrences(t);
    if (!found.length && t.length > 2) {
      // The server matches a CJK query by its pairs of characters: they
      // may stand apart in the message.
      for (let i = 0; i + 1 < t.length; i++) found = found.concat(occurrences(t.slice(i, i + 2)));
    }
    ranges.push(...found);
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([...r]);
  }
  return merged;
}

/**
 * The @username mentions in text of the users ids (a message's mentions),
 * found as the server finds them (core.MentionNames): {start, end, id}.
 * Users not known yet are fetched; their mentions show once they are.
 */
function mentionRanges(text, ids) {
  if (!ids?.length) return [];
  const names = new Map();
  for (const id of ids) {
    const u = state.users.get(id);
    if (u?.username) names.set(u.username.toLowerCase(), id);
    else ensureUser(id);
  }
  const out = [];
  for (const mt of text.matchAll(/@([A-Za-z0-9_.-]+)/g)) {
    const i = mt.index;
    if (i > 0) {
      // "a@b" is an e-mail address, not a mention.
      const before = text.codePointAt(/[\udc00-\udfff]/.test(text[i - 1]) && i > 1 ? i - 2 : i - 1);
      if (LETTER_OR_DIGIT.test(String.fromCodePoint(before))) continue;
    }
    let name = mt[1].toLowerCase();
    let id = names.get(name);
    if (!id) {
      name = name.replace(/[.-]+$/, ''); // "thanks @bob."
      id = names.get(name);
    }
    if (id) out.push({start: i, end: i + 1 + name.length, id});
  }
  return out;
}

/**
 * The nodes showing text with spans ({start, end, tag, class, id}, sorted,
 * not overlapping) wrapped in elements: text nodes and elements built with
 * the DOM, never markup.
 */
function fragments(text, spans) {
  const out = [];
  let at = 0;
  for (const s of spans) {
    if (s.start < at) continue;
    if (s.start > at) out.push(document.createTextNode(text.slice(at, s.start)));
    out.push(el(s.tag, {class: s.class, data: {userId: s.id}, text: text.slice(s.start, s.end)}));
    at = s.end;
  }
  if (at < text.length) out.push(document.createTextNode(text.slice(at)));
  return out;
}

const SNIPPET = 180;

/** Cuts a long text to a window around its first span, with ellipses; spans move along. */
function snippet(text, spans) {
  if (text.length <= SNIPPET) return {text, spans};
  const lowSurrogate = (i) => /[\udc00-\udfff]/.test(text[i] || '');
  let start = spans.length ? Math.max(0, spans[0].start - 40) : 0;
  if (lowSurrogate(start)) start--;
  let end = Math.min(text.length, start + SNIPPET);
  if (lowSurrogate(end)) end++;
  const pre = start > 0 ? '…' : '';
  const shift = pre.length - start;
  return {
    text: pre + text.slice(start, end) + (end < text.length ? '…' : ''),
    spans: spans.filter((s) => s.start >= start && s.end <= end).map((s) => ({...s, start: s.start + shift, end: s.end + shift})),
  };
}

/** One search result or mention: the conversation's name, sender, time and the content, marked. */
function foundLi(convID, m, terms) {
  const me = client.user;
  const c = state.convs.get(convID) || convOf(m);
  if (c.kind === 'direct') ensureUser(c.peer_id);
  ensureUser(m.from);
  let spans;
  if (terms) {
    spans = matchRanges(m.content, terms).map(([start, end]) => ({start, end, tag: 'mark'}));
  } else {
    spans = mentionRanges(m.content, m.mentions).map((r) => ({...r, tag: 'span', class: r.id === me.id ? 'mention me' : 'mention'}));
  }
  const cut = snippet(m.content, spans);
  return el('li', {class: 'found clickable', data: {id: m.id, convId: convID}, title: 'show in the conversation', on: {click: () => jumpTo(convID, m)}},
    el('div', {class: 'head'},
      el('span', {class: 'name', text: titleOf(c)}),
      el('time', {class: 'muted', datetime: m.created_at || '', text: m.created_at ? timeOf(m.created_at) : ''})),
    el('div', {class: 'author muted', text: m.from === me.id ? 'You' : nameOf(m.from)}),
    el('div', {class: 'snippet'}, ...fragments(cut.text, cut.spans)));
}

// The message search: {q, terms, results, hasMore, loading, error} of the last query.
let find = null;

$('find-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const q = $('find-input').value.trim();
  if (q) runFind(q, false, findScope());
});
// Changing the scope while results are shown searches again, once per click.
$('find-here').addEventListener('change', () => {
  const q = $('find-input').value.trim();
  if (q && !$('find-panel').hidden) runFind(q, false, findScope());
});

/** The conversation to search in (#find-here, while one is open), or null for all. */
function findScope() {
  const o = state.open;
  if (!$('find-here').checked || !o?.id) return null;
  return {id: o.id, kind: o.kind, peer_id: o.peer_id, group_id: o.group_id};
}

/** #find-here: enabled, and named, while a conversation (that has an id) is open. */
function renderFindScope() {
  const o = state.open;
  const box = $('find-here');
  box.disabled = !o?.id;
  if (!o) box.checked = false;
  $('find-here-name').textContent = o ? `Only in “${titleOf(o)}”` : 'Only in the open conversation';
  $('find-here-label').title = o?.id ? 'search only this conversation' : 'open a conversation to search only in it';
}
$('find-more').addEventListener('click', () => {
  if (find?.hasMore && !find.loading) runFind(find.q, true);
});
$('find-close').addEventListener('click', () => showPanel('chats'));

/**
 * Searches all the user's conversations for q, or only scope's (a
 * conversation), or (more) fetches the next page of the last search, in its scope.
 */
async function runFind(q, more = false, scope = null) {
  const f = more ? find : {q, scope, terms: queryTerms(q), results: [], hasMore: false, loading: false, error: ''};
  find = f;
  f.loading = true;
  f.error = '';
  showPanel('find');
  renderFind();
  const p = new URLSearchParams({q: f.q, limit: '20'});
  if (f.scope) p.set('conversation_id', f.scope.id);
  if (more && f.results.length) p.set('before', f.results[f.results.length - 1].message.id);
  try {
    const page = await client.api('GET', `/v1/search?${p}`);
    if (find !== f) return;
    const seen = new Set(f.results.map((r) => r.message.id));
    f.results.push(...page.results.filter((r) => !seen.has(r.message.id)));
    f.hasMore = page.has_more;
  } catch (err) {
    if (find !== f) return;
    f.error = err.message;
    f.errorCode = err.code || '';
    if (!more) f.hasMore = false;
  } finally {
    f.loading = false;
  }
  renderFind();
}

function renderFind() {
  const f = find;
  const panel = $('find-panel');
  if (!f) {
    $('find-results').replaceChildren();
    return;
  }
  panel.dataset.state = f.loading ? 'loading' : f.error ? 'error' : 'done';
  panel.dataset.q = f.q;
  panel.dataset.scope = f.scope?.id || '';
  const n = f.results.length;
  const where = f.scope ? ` in “${titleOf(f.scope)}”` : ' in all conversations';
  $('find-title').textContent = f.loading && !n ? `Searching for “${f.q}”${where}…`
    : f.error && !n ? `Search for “${f.q}”${where}`
      : `${n}${f.hasMore ? '+' : ''} result${n === 1 ? '' : 's'} for “${f.q}”${where}`;
  $('find-error').textContent = f.error;
  $('find-error').hidden = !f.error;
  $('find-error').dataset.code = f.errorCode || '';
  $('find-results').replaceChildren(...f.results.map((r) => foundLi(r.conversation_id, r.message, f.terms)));
  if (!n && !f.loading && !f.error) $('find-results').append(el('li', {class: 'muted empty', text: 'No messages found.'}));
  $('find-more').hidden = !f.hasMore;
  $('find-more').disabled = f.loading;
}

// Mentions of the user: loaded when the tab is shown, kept up to date by message events.
function newMentions() {
  return {items: [], hasMore: false, loaded: false, loading: false, error: '', fresh: 0, gen: 0};
}

let mentions = newMentions();

$('mentions-more').addEventListener('click', () => loadMentions(true));

/** Loads the newest mentions (again), or (more) the next older page. */
async function loadMentions(more = false) {
  const s = mentions;
  s.fresh = 0;
  renderMentionCount();
  if (s.loading || (more && !s.hasMore)) return;
  s.loading = true;
  const gen = ++s.gen;
  renderMentions();
  const p = new URLSearchParams({limit: '30'});
  if (more && s.items.length) p.set('before', s.items[s.items.length - 1].id);
  try {
    const page = await client.api('GET', `/v1/mentions?${p}`);
    if (mentions !== s || s.gen !== gen) return;
    if (more) {
      const seen = new Set(s.items.map((m) => m.id));
      s.items.push(...page.messages.filter((m) => !seen.has(m.id)));
      s.hasMore = page.has_more;
    } else {
      // Mentions that came in live while this was read stay.
      const seen = new Set(page.messages.map((m) => m.id));
      const newer = s.items.filter((m) => !seen.has(m.id) && (!page.messages.length || compareIDs(m.id, page.messages[0].id) > 0));
      s.items = [...newer, ...page.messages];
      s.hasMore = page.has_more;
    }
    s.loaded = true;
    s.error = '';
  } catch (err) {
    if (mentions !== s) return;
    s.error = err.message;
  } finally {
    if (mentions === s && s.gen === gen) s.loading = false;
  }
  renderMentions();
}

/** A message event mentioning the user. */
function onMention(m) {
  const s = mentions;
  if (s.items.some((x) => x.id === m.id)) return;
  let i = 0;
  while (i < s.items.length && compareIDs(s.items[i].id, m.id) > 0) i++;
  s.items.splice(i, 0, m);
  if ($('mentions-panel').hidden) s.fresh++;
  renderMentionCount();
  renderMentions();
}

function renderMentionCount() {
  const n = mentions.fresh;
  $('mentions-count').hidden = n === 0;
  $('mentions-count').textContent = n > 99 ? '99+' : String(n);
}

function renderMentions() {
  const s = mentions;
  $('mentions-panel').dataset.state = s.loading ? 'loading' : s.error ? 'error' : s.loaded ? 'done' : '';
  $('mentions-list').replaceChildren(...s.items.map((m) => foundLi(m.conversation_id, m, null)));
  if (s.error) $('mentions-list').append(el('li', {class: 'error empty', text: s.error}));
  else if (!s.items.length && s.loaded) $('mentions-list').append(el('li', {class: 'muted empty', text: 'Nobody has mentioned you yet. People do it by writing @' + (client.user?.username || 'you') + '.'}));
  $('mentions-more').hidden = !s.hasMore;
}

/** Re-renders the search results and mentions (names may have been learned). */
function renderFinds() {
  if (find) renderFind();
  if (mentions.items.length) renderMentions();
}

// ---- groups: create, add members ----

let peopleMode = 'create';
let peopleExtra = [];

$('new-group').addEventListener('click', () => openPeople('create'));
$('add-member').addEventListener('click', () => openPeople('add'));
$('people-cancel').addEventListener('click', () => $('people-dialog').close());

function openPeople(mode) {
  peopleMode = mode;
  peopleExtra = [];
  $('people-title').textContent = mode === 'create' ? 'New group' : 'Add members';
  $('people-ok').textContent = mode === 'create' ? 'Create' : 'Add';
  $('group-name-row').hidden = mode !== 'create';
  $('group-name').value = '';
  $('people-search').value = '';
  $('people-error').textContent = '';
  renderPeople();
  $('people-dialog').showModal();
  (mode === 'create' ? $('group-name') : $('people-search')).focus();
}

function renderPeople() {
  const members = new Set(peopleMode === 'add' ? (state.groups.get(state.open?.group_id)?.members || []).map((u) => u.id) : []);
  members.add(client.user.id);
  const checked = new Set([...$('people-list').querySelectorAll('input:checked')].map((i) => i.value));
  const seen = new Set();
  const people = [...[...state.friendIDs].map((id) => state.users.get(id)), ...peopleExtra]
    .filter((u) => u && !members.has(u.id) && !seen.has(u.id) && seen.add(u.id));
  $('people-list').replaceChildren(...people.map((u) => el('li', {data: {userId: u.id, username: u.username}},
    el('label', {}, el('input', {type: 'checkbox', value: u.id, checked: checked.has(u.id)}),
      el('span', {text: ` ${u.display_name} `}), el('span', {class: 'muted small', text: `@${u.username}`})))));
  if (!people.length) $('people-list').append(el('li', {class: 'muted empty', text: 'Search for people to add.'}));
}

async function searchPeople() {
  const q = $('people-search').value.trim();
  if (!q) return;
  try {
    peopleExtra = (await client.api('GET', `/v1/users?q=${encodeURIComponent(q)}`)).users;
  } catch (err) {
    $('people-error').textContent = err.message;
  }
  renderPeople();
}

$('people-search-go').addEventListener('click', searchPeople);
$('people-search').addEventListener('keydown', (e) => {
  if (e.key === 'Enter') {
    e.preventDefault();
    searchPeople();
  }
});

$('people-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const ids = [...$('people-list').querySelectorAll('input:checked')].map((i) => i.value);
  $('people-error').textContent = '';
  try {
    if (peopleMode === 'create') {
      const d = await client.api('POST', '/v1/groups', {name: $('group-name').value, members: ids});
      state.groups.set(d.id, d);
      $('people-dialog').close();
      showPanel('chats');
      openConversation({kind: 'group', group_id: d.id, id: d.conversation_id});
    } else {
      const gid = state.open.group_id;
      for (const id of ids) await client.api('POST', `/v1/groups/${gid}/members`, {user_id: id});
      $('people-dialog').close();
      await loadGroup(gid);
    }
  } catch (err) {
    $('people-error').textContent = err.message;
  }
});

let toastTimer = 0;

function alertError(err) {
  $('toast').textContent = err.message;
  $('toast').hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { $('toast').hidden = true; }, 5000);
}

// ---- start ----

if (client.token) startMain();
else showAuth();
