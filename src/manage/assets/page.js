// The token page of tower-pat: lists, generates, regenerates and revokes the signed-in
// user's tokens through the JSON API beside it. Plain script, no framework, no build step. Everything
// from the server is put in the page as text (textContent), never parsed as HTML; the
// page's Content-Security-Policy refuses HTML-parsing sinks outright (Trusted Types).
(function () {
  'use strict';

  var root = document.getElementById('tp');
  if (!root) {
    return;
  }
  var api = root.getAttribute('data-api') || '';
  var exampleUrl = root.getAttribute('data-example-url') || '';
  var signInUrl = root.getAttribute('data-sign-in-url') || '';
  // Where the next page of the list starts (the API's Link: rel="next"), if anywhere.
  var nextPage = null;

  function byId(id) {
    return document.getElementById(id);
  }

  var ui = {
    notice: byId('tp-notice'),
    reveal: byId('tp-reveal'),
    secret: byId('tp-secret'),
    copy: byId('tp-copy'),
    tryIt: byId('tp-try'),
    curl: byId('tp-curl'),
    copyCurl: byId('tp-copy-curl'),
    done: byId('tp-done'),
    form: byId('tp-create'),
    name: byId('tp-name'),
    expiry: byId('tp-expiry'),
    expiryDate: byId('tp-expiry-date'),
    errors: byId('tp-errors'),
    generate: byId('tp-generate'),
    revokeAll: byId('tp-revoke-all'),
    confirmAll: byId('tp-confirm-all'),
    confirmAllYes: byId('tp-confirm-all-yes'),
    confirmAllNo: byId('tp-confirm-all-no'),
    loading: byId('tp-loading'),
    empty: byId('tp-empty'),
    table: byId('tp-table'),
    tokens: byId('tp-tokens'),
    more: byId('tp-more')
  };

  var STATUS = {
    active: 'Active',
    expired: 'Expired',
    revoked: 'Revoked',
    idle_expired: 'Idle'
  };
  // What a regeneration leaves the old token, in seconds, and how the page says it.
  var OVERLAPS = [
    [0, 'Stop the old token now'],
    [3600, 'Keep the old token for 1 hour'],
    [86400, 'Keep the old token for 1 day']
  ];
  var DAY = 24 * 60 * 60 * 1000;
  var dateFormat = new Intl.DateTimeFormat(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric'
  });
  var dateTimeFormat = new Intl.DateTimeFormat(undefined, {
    dateStyle: 'medium',
    timeStyle: 'short'
  });

  function node(tag, className, text) {
    var e = document.createElement(tag);
    if (className) {
      e.className = className;
    }
    if (text !== undefined && text !== null) {
      e.textContent = String(text);
    }
    return e;
  }

  function button(label, className) {
    var b = node('button', 'tp-button ' + className, label);
    b.type = 'button';
    return b;
  }

  // One call to the API. Resolves to {status, data, refusal}: status 0 when the server
  // could not be reached; refusal the API's {error, code, message} when it refused, else
  // null. A refusal's code says why; its message is for the person at the page.
  function request(method, path, body) {
    return requestUrl(method, api + path, body);
  }

  // The URL of the next page, from a `Link: <url>; rel="next"` header.
  function nextLink(res) {
    var link = res.headers.get('Link') || '';
    var match = /<([^>]*)>\s*;\s*rel="next"/.exec(link);
    return match ? match[1] : null;
  }

  function requestUrl(method, url, body) {
    var init = {
      method: method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' }
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(
      function (res) {
        var next = nextLink(res);
        if (res.status === 204) {
          return answer(res.status, null, next);
        }
        return res.json().then(
          function (data) {
            return answer(res.status, data, next);
          },
          function () {
            return answer(res.status, null, next);
          }
        );
      },
      function () {
        return answer(0, null, null);
      }
    );
  }

  function answer(status, data, next) {
    var refused =
      status >= 400 &&
      data !== null &&
      typeof data === 'object' &&
      typeof data.error === 'string' &&
      typeof data.code === 'string'
        ? data
        : null;
    var r = { status: status, data: data, refusal: refused, next: next };
    if (isSignedOut(r)) {
      signedOut();
    }
    return r;
  }

  function isSignedOut(r) {
    return r.refusal !== null && r.refusal.code === 'not_signed_in';
  }

  function message(r) {
    if (r.refusal && typeof r.refusal.message === 'string') {
      return r.refusal.message;
    }
    if (r.status === 0) {
      return 'the server could not be reached';
    }
    return 'the server answered ' + r.status;
  }

  function notice(text, isError) {
    ui.notice.replaceChildren();
    if (!text) {
      ui.notice.hidden = true;
      return;
    }
    ui.notice.textContent = text;
    ui.notice.className = isError ? 'tp-notice tp-notice-error' : 'tp-notice';
    ui.notice.hidden = false;
  }

  function signedOut() {
    notice('You are signed out. Sign in again to manage your tokens. ', true);
    if (signInUrl) {
      var a = node('a', null, 'Sign in');
      a.href = signInUrl;
      ui.notice.append(a);
    }
  }

  function showErrors(messages) {
    ui.errors.replaceChildren();
    if (!messages.length) {
      ui.errors.hidden = true;
      return;
    }
    var list = node('ul');
    messages.forEach(function (m) {
      list.append(node('li', null, m));
    });
    ui.errors.append(list);
    ui.errors.hidden = false;
  }

  function timeNode(iso, withTime) {
    var d = new Date(iso);
    var t = node('time', null, isNaN(d) ? iso : (withTime ? dateTimeFormat : dateFormat).format(d));
    t.dateTime = iso;
    t.title = iso;
    return t;
  }

  function cell(label, className) {
    var td = node('td', className);
    td.setAttribute('data-label', label);
    return td;
  }

  // "in 3 days", "in 5 hours", "in 12 minutes".
  function timeLeft(seconds) {
    var units = [
      [86400, 'day'],
      [3600, 'hour'],
      [60, 'minute']
    ];
    for (var i = 0; i < units.length; i++) {
      var n = Math.floor(seconds / units[i][0]);
      if (n >= 1) {
        return 'in ' + n + ' ' + units[i][1] + (n === 1 ? '' : 's');
      }
    }
    return 'in less than a minute';
  }

  function row(token) {
    var active = token.status === 'active';
    var tr = node('tr', active ? '' : 'tp-inactive');
    tr.setAttribute('data-id', token.id);
    tr.setAttribute('data-status', token.status);
    if (token.rotated_to) {
      tr.setAttribute('data-rotated-to', token.rotated_to);
    }

    var name = cell('Name', 'tp-name');
    name.append(node('span', 'tp-token-name', token.name));
    if (token.rotated_from) {
      name.append(node('span', 'tp-note', 'Regenerated from an earlier token'));
    }

    var scopes = cell('Scopes');
    var chips = node('span', 'tp-chips');
    if (token.scopes.length === 0) {
      chips.append(node('span', 'tp-muted', 'none'));
    }
    token.scopes.forEach(function (s) {
      chips.append(node('code', 'tp-chip', s));
    });
    scopes.append(chips);

    var created = cell('Created');
    created.append(timeNode(token.created_at, false));

    var used = cell('Last used');
    if (token.last_used_at) {
      used.append(timeNode(token.last_used_at, true));
    } else {
      used.append(node('span', 'tp-muted', 'Never'));
    }

    // A value and the notes under it, as one item (a narrow screen lays each cell out
    // as a label and one item).
    var expires = cell('Expires');
    var when = node('span', 'tp-stack');
    when.append(timeNode(token.expires_at, !!token.rotated_to));
    if (token.expires_soon && typeof token.expires_in_seconds === 'number') {
      when.append(node('span', 'tp-soon', 'Expires ' + timeLeft(token.expires_in_seconds)));
    }
    expires.append(when);

    var status = cell('Status');
    var state = node('span', 'tp-stack');
    state.append(
      node('span', 'tp-badge tp-badge-' + token.status, STATUS[token.status] || token.status)
    );
    if (token.rotated_to) {
      state.append(
        node('span', 'tp-note', active ? 'Replaced: works until it expires' : 'Replaced')
      );
    }
    status.append(state);

    var actions = cell('', 'tp-actions');
    showActions(token, actions);

    tr.append(name, scopes, created, used, expires, status, actions);
    return tr;
  }

  function showActions(token, actions) {
    actions.replaceChildren();
    if (token.status !== 'active') {
      return;
    }
    var list = node('div', 'tp-action-list');
    if (!token.rotated_to) {
      list.append(rotateButton(token, actions));
    }
    list.append(revokeButton(token, actions));
    actions.append(list);
  }

  function rotateButton(token, actions) {
    var b = button('Regenerate', 'tp-quiet tp-small tp-rotate');
    b.setAttribute('aria-label', 'Regenerate ' + token.name);
    b.addEventListener('click', function () {
      confirmRotate(token, actions);
    });
    return b;
  }

  function confirmRotate(token, actions) {
    var box = node('div', 'tp-confirm-inline tp-confirm-rotate');
    var label = node('label', 'tp-overlap');
    label.append(node('span', 'tp-sr', 'When the old token stops working'));
    var select = node('select', 'tp-overlap-choice');
    OVERLAPS.forEach(function (choice) {
      var option = node('option', null, choice[1]);
      option.value = String(choice[0]);
      select.append(option);
    });
    label.append(select);
    var yes = button('Regenerate', 'tp-primary tp-small tp-rotate-yes');
    var no = button('Cancel', 'tp-quiet tp-small');
    box.append(node('span', null, 'Regenerate this token?'), label, yes, no);
    yes.addEventListener('click', function () {
      yes.disabled = true;
      no.disabled = true;
      select.disabled = true;
      var overlap = Number(select.value);
      request('POST', '/tokens/' + encodeURIComponent(token.id) + '/rotate', {
        overlap_seconds: overlap
      }).then(function (r) {
        if (r.status === 201 && r.data && r.data.plaintext) {
          notice(
            overlap
              ? 'Regenerated \u201c' + token.name + '\u201d. The old token works until ' +
                  dateTimeFormat.format(new Date(r.data.previous.expires_at)) + '.'
              : 'Regenerated \u201c' + token.name + '\u201d. The old token no longer works.'
          );
          reveal(r.data);
        } else if (!isSignedOut(r)) {
          notice('The token could not be regenerated: ' + message(r), true);
        }
        return reload();
      });
    });
    no.addEventListener('click', function () {
      showActions(token, actions);
    });
    actions.replaceChildren(box);
    select.focus();
  }

  function revokeButton(token, actions) {
    var b = button('Revoke', 'tp-danger-quiet tp-small tp-revoke');
    b.setAttribute('aria-label', 'Revoke ' + token.name);
    b.addEventListener('click', function () {
      confirmRevoke(token, actions);
    });
    return b;
  }

  function confirmRevoke(token, actions) {
    var box = node('div', 'tp-confirm-inline');
    var yes = button('Yes, revoke', 'tp-danger tp-small tp-revoke-yes');
    var no = button('Cancel', 'tp-quiet tp-small');
    box.append(node('span', null, 'Revoke this token?'), yes, no);
    yes.addEventListener('click', function () {
      yes.disabled = true;
      no.disabled = true;
      request('DELETE', '/tokens/' + encodeURIComponent(token.id)).then(function (r) {
        if (r.status === 204) {
          notice('Revoked \u201c' + token.name + '\u201d. It no longer works.');
        } else if (!isSignedOut(r)) {
          notice('The token could not be revoked: ' + message(r), true);
        }
        return reload();
      });
    });
    no.addEventListener('click', function () {
      showActions(token, actions);
    });
    actions.replaceChildren(box);
    yes.focus();
  }

  // Shows `tokens`: the whole list when `append` is false, one more page when true.
  function render(tokens, append) {
    ui.loading.hidden = true;
    if (!append) {
      ui.tokens.replaceChildren();
    }
    tokens.forEach(function (t) {
      ui.tokens.append(row(t));
    });
    var shown = ui.tokens.children.length;
    ui.table.hidden = shown === 0;
    ui.empty.hidden = shown !== 0;
    ui.more.hidden = !nextPage;
    var revocable = Array.prototype.some.call(ui.tokens.children, function (tr) {
      return tr.getAttribute('data-status') !== 'revoked';
    });
    ui.revokeAll.hidden = !revocable && !nextPage;
    if (ui.revokeAll.hidden) {
      ui.confirmAll.hidden = true;
    }
  }

  function loaded(r, append) {
    if (r.status === 200 && Array.isArray(r.data)) {
      nextPage = r.next;
      render(r.data, append);
      return true;
    }
    if (!isSignedOut(r)) {
      ui.loading.hidden = false;
      ui.loading.textContent = 'Your tokens could not be loaded: ' + message(r);
    }
    return false;
  }

  // The first page of the list.
  function load() {
    return request('GET', '/tokens').then(function (r) {
      loaded(r, false);
    });
  }

  // The next page, below the rows shown.
  function loadMore() {
    if (!nextPage) {
      return Promise.resolve();
    }
    ui.more.disabled = true;
    return requestUrl('GET', nextPage).then(function (r) {
      ui.more.disabled = false;
      loaded(r, true);
    });
  }

  // The list again after a change, as far down as it was shown.
  function reload() {
    var wanted = ui.tokens.children.length;
    return load().then(function more() {
      if (nextPage && ui.tokens.children.length < wanted) {
        return loadMore().then(more);
      }
      return undefined;
    });
  }

  function shellQuote(s) {
    return "'" + s.replace(/'/g, "'\\''") + "'";
  }

  function reveal(created) {
    ui.secret.textContent = created.plaintext;
    if (exampleUrl) {
      var url = new URL(exampleUrl, window.location.origin).href;
      ui.curl.textContent =
        'curl -H ' + shellQuote('Authorization: Bearer ' + created.plaintext) + ' ' + shellQuote(url);
      ui.tryIt.hidden = false;
    }
    ui.reveal.hidden = false;
    ui.copy.textContent = 'Copy';
    ui.copyCurl.textContent = 'Copy';
    ui.reveal.scrollIntoView({ block: 'start' });
    selectText(ui.secret);
  }

  // Forgets the token: it leaves the page for good.
  function conceal() {
    ui.secret.textContent = '';
    ui.curl.textContent = '';
    ui.tryIt.hidden = true;
    ui.reveal.hidden = true;
  }

  function selectText(element) {
    element.focus();
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copy(text, source, b) {
    var fallback = function () {
      selectText(source);
      b.textContent = 'Press Ctrl+C';
    };
    if (!navigator.clipboard || !window.isSecureContext) {
      fallback();
      return;
    }
    navigator.clipboard.writeText(text).then(function () {
      b.textContent = 'Copied';
    }, fallback);
  }

  function updateExpiryDate() {
    var days = Number(ui.expiry.value);
    ui.expiryDate.textContent = days
      ? 'Expires on ' + dateFormat.format(new Date(Date.now() + days * DAY))
      : '';
  }

  ui.form.addEventListener('submit', function (event) {
    event.preventDefault();
    var boxes = Array.prototype.slice.call(ui.form.querySelectorAll('input[name="scopes"]'));
    var scopes = boxes
      .filter(function (b) {
        return b.checked;
      })
      .map(function (b) {
        return b.value;
      });
    var problems = [];
    if (!ui.name.value.trim()) {
      problems.push('Give the token a name, to recognise it later.');
    }
    if (boxes.length && !scopes.length) {
      problems.push('Choose at least one scope.');
    }
    showErrors(problems);
    if (problems.length) {
      return;
    }
    var body = { name: ui.name.value, scopes: scopes };
    if (ui.expiry.value) {
      body.expires_in_days = Number(ui.expiry.value);
    }
    ui.generate.disabled = true;
    request('POST', '/tokens', body).then(function (r) {
      ui.generate.disabled = false;
      if (r.status === 201 && r.data && r.data.plaintext) {
        notice('');
        ui.form.reset();
        updateExpiryDate();
        reveal(r.data);
        return reload();
      }
      if (r.refusal && Array.isArray(r.refusal.problems)) {
        showErrors(
          r.refusal.problems.map(function (p) {
            return p.message;
          })
        );
      } else if (!isSignedOut(r)) {
        showErrors(['The token was not created: ' + message(r)]);
      }
      return undefined;
    });
  });

  ui.copy.addEventListener('click', function () {
    copy(ui.secret.textContent, ui.secret, ui.copy);
  });
  ui.secret.addEventListener('click', function () {
    selectText(ui.secret);
  });
  ui.curl.addEventListener('click', function () {
    selectText(ui.curl);
  });
  ui.copyCurl.addEventListener('click', function () {
    copy(ui.curl.textContent, ui.curl, ui.copyCurl);
  });
  ui.done.addEventListener('click', conceal);
  window.addEventListener('pagehide', conceal);

  ui.expiry.addEventListener('change', updateExpiryDate);

  ui.revokeAll.addEventListener('click', function () {
    ui.confirmAll.hidden = false;
    ui.confirmAllYes.focus();
  });
  ui.confirmAllNo.addEventListener('click', function () {
    ui.confirmAll.hidden = true;
  });
  ui.confirmAllYes.addEventListener('click', function () {
    ui.confirmAllYes.disabled = true;
    request('DELETE', '/tokens').then(function (r) {
      ui.confirmAllYes.disabled = false;
      ui.confirmAll.hidden = true;
      if (r.status === 200 && r.data) {
        var n = r.data.revoked;
        notice(n === 1 ? 'Revoked 1 token.' : 'Revoked ' + n + ' tokens.');
      } else if (!isSignedOut(r)) {
        notice('The tokens could not be revoked: ' + message(r), true);
      }
      return reload();
    });
  });

  ui.more.addEventListener('click', function () {
    loadMore();
  });

  updateExpiryDate();
  load();
})();
