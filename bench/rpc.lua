-- wrk script for BENCHMARKS.md: POSTs one JSON-RPC body and checks every reply.
--
--   wrk -t2 -c32 -d10s -s bench/rpc.lua http://127.0.0.1:8080/ -- BODY_FILE [expect-error]
--
-- BODY_FILE holds the request. Each "{n}" in it becomes a string unique to the request, across
-- runs too (for calls such as addWebhook that must not repeat). A reply that is not HTTP 200, or carries
-- "error" when a result is expected (or the reverse with expect-error), counts as a failure;
-- done() prints one line the harness parses:
--   RESULT requests=N seconds=S rps=R p50_ms=A p99_ms=B failures=F

local threads = {}

function setup(thread)
  thread:set("thread_no", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  template = file:read("*a")
  file:close()
  expect_error = args[2] == "expect-error"
  unique = template:find("{n}", 1, true) ~= nil
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = template
  fixed = wrk.format()
  run = string.format("%x%s", os.time(), tostring({}):match("0x(%x+)") or "")
  sent = 0
  failures = 0
end

function request()
  if not unique then
    return fixed
  end
  sent = sent + 1
  local n = string.format("%s-%d-%d", run, thread_no, sent)
  local body = template:gsub("{n}", n)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  local is_error = body:find('"error":{', 1, true) ~= nil
  if status ~= 200 or is_error ~= expect_error then
    failures = failures + 1
    if failures == 1 then
      io.stderr:write("first failure: HTTP " .. status .. " " .. body:sub(1, 300) .. "\n")
    end
  end
end

function done(summary, latency, requests)
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
  end
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f failures=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, failed))
end
