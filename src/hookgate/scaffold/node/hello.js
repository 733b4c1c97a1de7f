// The sync flow's worker: the caller waits and gets this answer, status and all.
"use strict";

const http = require("node:http");

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const name = Buffer.concat(chunks).toString("utf8").trim() || "world";
    const body = JSON.stringify({ hello: name, path: req.url.split("?")[0] });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
});

process.on("SIGTERM", () => server.close(() => process.exit(0)));
server.listen(Number(process.env.PORT), process.env.HOST || "127.0.0.1");
