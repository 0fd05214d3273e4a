/*
 * batchops: starts GraphiQL on the page built by batchops.server.graphql.graphiql.
 *
 * A file rather than an inline <script>, so that the page's Content-Security-Policy can
 * say script-src 'self' and nothing more. Its settings come from data-* attributes of
 * the #graphiql element, which the server writes (HTML-escaped).
 */
(function () {
  "use strict";

  var root = document.getElementById("graphiql");
  var endpoint = root.dataset.endpoint;

  // GraphiQL sends the headers editor's JSON as options.headers; ours come first so that
  // the editor can override them. credentials "same-origin": a cookie of this origin (if
  // the deployment uses one) goes along, nothing goes to any other origin.
  function fetcher(params, options) {
    var headers = Object.assign(
      { "Content-Type": "application/json", Accept: "application/json" },
      (options && options.headers) || {}
    );
    return fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: headers,
      body: JSON.stringify(params),
    }).then(function (response) {
      return response.text().then(function (text) {
        try {
          return JSON.parse(text);
        } catch (error) {
          // A proxy's HTML error page, say: show it instead of a JSON parse error.
          return { errors: [{ message: "HTTP " + response.status + ": " + text }] };
        }
      });
    });
  }

  // shouldPersistHeaders: false keeps the headers editor and the tabs out of storage, but
  // GraphiQL 3's query history still stores each run's headers (its HistoryStore ignores
  // that setting). An API key must not linger in localStorage, so every value GraphiQL
  // writes loses its "headers" fields here (null, the value GraphiQL itself uses for
  // "not persisted"; its tab-state check wants the field present). The cost: a history
  // entry from an earlier visit, when picked, empties the headers editor.
  var PREFIX = "graphiql:";

  function withoutHeaders(key, value) {
    if (key === PREFIX + "headers") {
      return null;
    }
    var parsed;
    try {
      parsed = JSON.parse(value);
    } catch (error) {
      return value; // a plain string (the query, the variables): no headers in it
    }
    if (parsed === null || typeof parsed !== "object") {
      return value;
    }
    return JSON.stringify(parsed, function (field, inner) {
      return field === "headers" ? null : inner;
    });
  }

  function graphiqlKeys() {
    var keys = [];
    for (var i = 0; i < localStorage.length; i++) {
      var key = localStorage.key(i);
      if (key !== null && key.indexOf(PREFIX) === 0) {
        keys.push(key);
      }
    }
    return keys;
  }

  var storage = {
    getItem: function (key) {
      return localStorage.getItem(key);
    },
    setItem: function (key, value) {
      var kept = withoutHeaders(key, value);
      if (kept === null) {
        localStorage.removeItem(key);
      } else {
        localStorage.setItem(key, kept);
      }
    },
    removeItem: function (key) {
      localStorage.removeItem(key);
    },
    clear: function () {
      graphiqlKeys().forEach(function (key) {
        localStorage.removeItem(key);
      });
    },
    get length() {
      return graphiqlKeys().length;
    },
  };

  // Scrub what an earlier page (or another GraphiQL on this origin) may have left.
  graphiqlKeys().forEach(function (key) {
    storage.setItem(key, localStorage.getItem(key));
  });

  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: root.dataset.defaultQuery,
      defaultHeaders: root.dataset.defaultHeaders,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: "headers",
      storage: storage,
    })
  );
})();
