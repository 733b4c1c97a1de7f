// The fixed fast worker of the e2e scenario: Node's http server, 200 {} at once.
// A request carrying x-sent-at (epoch ms) appends its accept-to-delivery latency to $BENCH_LATENCY.
const http = require("http");
const fs = require("fs");
const out = process.env.BENCH_LATENCY;
http.createServer((req, res) => {
  req.on("data", () => {});
  req.on("end", () => {
    const sent = req.headers["x-sent-at"];
    if (sent && out) fs.appendFileSync(out, `${Date.now() - Number(sent)}\n`);
    res.writeHead(200, { "content-type": "application/json", "content-length": 2 });
    res.end("{}");
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
