// Echo worker in plain Node.js (no npm packages): any language that serves HTTP/1.1 on $PORT
// is a Hookgate worker. It answers with the same JSON as examples/workers/echo.py and honours
// the same ECHO_STATUS and ECHO_DELAY variables.
//
//   PORT=8080 node echo.js
"use strict";

const http = require("node:http");

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error("echo.js: set $PORT to the port to listen on");
  process.exit(2);
}
// Like the Python SDK: loopback locally, all interfaces in a Kubernetes pod, unless $HOST says.
const host = process.env.HOST || (process.env.KUBERNETES_SERVICE_HOST ? "0.0.0.0" : "127.0.0.1");
const status = Number(process.env.ECHO_STATUS || 200);
const delayMs = Number(process.env.ECHO_DELAY || 0) * 1000;

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const mark = req.url.indexOf("?");
    const attempt = req.headers["x-hookgate-attempt"];
    const echo = {
      method: req.method,
      path: mark === -1 ? req.url : req.url.slice(0, mark),
      query: mark === -1 ? "" : req.url.slice(mark + 1),
      headers: req.headers,
      body: Buffer.concat(chunks).toString("utf8"),
      flow: req.headers["x-hookgate-flow"] || process.env.HOOKGATE_FLOW_ID || null,
      delivery: req.headers["x-hookgate-delivery"] || null,
      attempt: /^\d+$/.test(attempt || "") ? Number(attempt) : null,
    };
    setTimeout(() => {
      const body = JSON.stringify(echo);
      res.writeHead(status, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
    }, delayMs);
  });
});

// Keep idle connections open longer than the gateway's pool does, so the gateway closes first.
server.keepAliveTimeout = 75_000;

// SIGTERM: stop accepting, let in-flight requests finish, then exit 0.
process.on("SIGTERM", () => server.close(() => process.exit(0)));

server.listen(port, host);
