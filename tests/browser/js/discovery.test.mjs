// discoverRooms: where the browser client finds the rooms (the page's server, or under
// JupyterHub the room service that server names in iavicenne/api/config).
import assert from "node:assert/strict";
import test from "node:test";

import { discoverRooms } from "../../../iavicenne_ext/static/discovery.js";

/** A fetch that answers `answers` in turn and records what it was asked. */
function fakeFetch(answers, calls) {
  return async (url, init) => {
    calls.push({ url, init });
    const { status, body } = answers.shift();
    return { status, ok: status < 300, json: async () => body };
  };
}

test("under JupyterHub, a user server's page finds the room service, with the Hub login and no token", async () => {
  const calls = [];
  const fetch = fakeFetch(
    [{ status: 200, body: { rooms_url: "http://10.0.0.5:9000/services/iavicenne/", page_url: "/services/iavicenne/iavicenne/", service: "iavicenne" } }],
    calls,
  );
  const server = await discoverRooms({
    location: "https://hub.example.org/user/alice/lab?token=usertoken",
    baseUrl: "/user/alice/",
    cookies: () => "_xsrf=XS",
    fetch,
  });
  assert.equal(calls[0].url, "https://hub.example.org/user/alice/iavicenne/api/config");
  assert.equal(calls[0].init.headers["X-XSRFToken"], "XS");
  // the browser goes through the Hub's proxy (same origin), not to the service's own address
  assert.equal(server.url, "https://hub.example.org/services/iavicenne/");
  assert.equal(server.token, "", "a user server's token is not sent to the service");
  assert.equal(server.wsUrl("iavicenne/ws/mcp"), "wss://hub.example.org/services/iavicenne/iavicenne/ws/mcp");
});

test("a server that keeps its rooms, or has no config endpoint, is the rooms' server", async () => {
  const calls = [];
  const fetch = fakeFetch(
    [
      { status: 200, body: { rooms_url: "http://127.0.0.1:8888/", page_url: "/iavicenne/", service: "" } },
      { status: 404, body: { message: "Not Found" } },
      { status: 200, body: { rooms_url: "x", page_url: "/elsewhere/" } },
    ],
    calls,
  );
  const own = await discoverRooms({ url: "http://127.0.0.1:8888/lab?token=tok", fetch });
  assert.equal(own.url, "http://127.0.0.1:8888/");
  assert.equal(own.token, "tok");
  const older = await discoverRooms({ url: "http://127.0.0.1:8888/?token=tok", fetch });
  assert.equal(older.url, "http://127.0.0.1:8888/");
  await assert.rejects(discoverRooms({ url: "http://127.0.0.1:8888/", fetch }), /named no page_url/);
});
