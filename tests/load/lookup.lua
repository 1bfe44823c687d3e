-- wrk script of the Relai benchmark (tests/load/bench.sh): GET /v1/lookup?postcode=...
-- rotating over every postcode of a list file (one five-digit postcode a line, written by
-- `loadgen snapshot`: the postcodes that answered 200), then one machine-readable line.
--
--   wrk -t1 -c64 -d20s -s tests/load/lookup.lua http://127.0.0.1:18480 -- postcodes.txt
--
-- The same script, list and URLs serve relai and nginx. The requests are formatted once
-- in init(), so the client spends no time building them during the run.

local requests_list = {}
local position = 0

local function read_postcodes(path)
   local list = {}
   local file = assert(io.open(path, "r"), "cannot open the postcode list " .. tostring(path))
   for line in file:lines() do
      local postcode = line:match("^%s*(%d%d%d%d%d)%s*$")
      if postcode then
         list[#list + 1] = postcode
      end
   end
   file:close()
   return list
end

local thread_index = 0
function setup(thread)
   thread:set("thread_index", thread_index)
   thread_index = thread_index + 1
end

function init(args)
   local path = args[1] or os.getenv("LOOKUP_POSTCODES")
   assert(path, "give the postcode list: wrk ... -s lookup.lua URL -- FILE")
   local postcodes = read_postcodes(path)
   assert(#postcodes > 0, "no postcode in " .. path)
   for i, postcode in ipairs(postcodes) do
      requests_list[i] = wrk.format("GET", "/v1/lookup?postcode=" .. postcode)
   end
   -- Threads start at different places of the list (thread_index is set by setup()).
   local index = tonumber(thread_index) or 0
   position = math.floor(index * #requests_list / 16) % #requests_list
end

function request()
   position = position % #requests_list + 1
   return requests_list[position]
end

-- Latencies are in microseconds. wrk counts a response with a status of 400 or more in
-- errors.status (reported as non2xx: no 1xx or 3xx is expected, no If-None-Match is sent).
function done(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f non2xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d bytes=%d\n",
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean,
      e.status, e.connect, e.read, e.write, e.timeout, summary.bytes))
end
