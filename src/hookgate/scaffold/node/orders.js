// The async flow's worker: each request the gateway accepted (202) is delivered here.
//
// Answer 2xx when the work is done; 4xx to refuse for good (the delivery goes to dead letters);
// 5xx, 429 or no answer to have it retried with backoff. The same delivery may come twice (at
// least once): the Idempotency-Key header is the same on every attempt, so dedupe on it.
"use strict";

const http = require("node:http");

function answer(res, status, data) {
  const body = JSON.stringify(data);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    let order;
    try {
      order = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return answer(res, 400, { error: "the body is not JSON" });
    }
    console.log(JSON.stringify({ order, key: req.headers["idempotency-key"] }));
    answer(res, 200, { done: true });
  });
});

process.on("SIGTERM", () => server.close(() => process.exit(0)));
server.listen(Number(process.env.PORT), process.env.HOST || "127.0.0.1");
