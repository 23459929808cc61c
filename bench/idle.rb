# frozen_string_literal: true

# What idle keep-alive connections cost a server, and whether it gives the memory back: for
# tipi -w 1 (bench/hello.ru) and nginx (1 worker) in the same run, one after the other:
#   1. the server's RSS once warm (all its processes), idle;
#   2. N connections (10,000 by default), each sending one request and reading its answer, then
#      left open and silent: RSS held, and per connection;
#   3. meanwhile, fresh requests on new connections (wrk -c10 for 3 s): their p99;
#   4. the N connections closed: RSS every 5 s for 30 s, and how far from idle it ends.
# With `tls` as an argument, tipi is measured over HTTPS too (its self-signed certificate; the
# handshakes make it slower). With `ws`, the connections are idle WebSockets instead (each
# having echoed one message), on bench/websocket_echo.rb: served by callbacks (parked without a
# fiber) and, the peer, by a fiber each waiting in `recv`; nginx's keep-alive figures stay as
# the reference.
#
# With `flood`, the keep-alive connections come 1,000 at a time: all connected, all their
# requests sent, then all their answers read (a burst that a server serves faster than it can
# look for idle connections).
#
# Usage: ruby bench/idle.rb [tls|ws] [flood] [connections]   (needs bin/setup's wrk and nginx)
require 'socket'
require 'openssl'
require 'tmpdir'
require 'open3'

ROOT = File.expand_path('..', __dir__)
tls = ARGV.delete('tls')
ws = ARGV.delete('ws')
FLOOD = ARGV.delete('flood')
COUNT = Integer(ARGV[0] || 10_000)
Process.setrlimit(:NOFILE, Process.getrlimit(:NOFILE)[1])
abort "bench/idle.rb: #{COUNT} connections need more descriptors (ulimit -n)" if Process.getrlimit(:NOFILE)[0] < COUNT + 200

# RSS in KB of a process and its descendants.
def rss_kb(pid)
  pids = [pid]
  pids.each { |p| pids.concat(File.read("/proc/#{p}/task/#{p}/children").split.map(&:to_i)) rescue nil } # rubocop:disable Style/RescueModifier
  pids.sum { |p| File.read("/proc/#{p}/status")[/VmRSS:\s+(\d+)/, 1].to_i rescue 0 } # rubocop:disable Style/RescueModifier
end

def free_port
  server = TCPServer.new('127.0.0.1', 0)
  server.addr[1]
ensure
  server&.close
end

REQUEST = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

def connect(port, tls)
  socket = TCPSocket.new('127.0.0.1', port)
  return socket unless tls

  ssl = OpenSSL::SSL::SSLSocket.new(socket, tls)
  ssl.sync_close = true
  ssl.connect
  ssl
end

# One request on a new connection, answered: the connection, left open.
def request(port, tls)
  socket = connect(port, tls)
  socket.write(REQUEST)
  read_answer(socket)
end

# Reads the answer to one REQUEST off `socket`; the socket.
def read_answer(socket)
  reply = +''
  reply << socket.readpartial(4096) until reply.include?("\r\n\r\n") && reply.end_with?('Hello')
  socket
end

# A WebSocket on a new connection (to `path` of bench/websocket_echo.rb), one message echoed:
# the connection, left open.
def websocket(port, path)
  socket = TCPSocket.new('127.0.0.1', port)
  socket.write("GET #{path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
  head = socket.gets("\r\n\r\n")
  raise "no WebSocket at #{path}: #{head.inspect}" unless head&.start_with?('HTTP/1.1 101')

  raise 'no echo' unless echoed?(socket)

  socket
end

# COUNT keep-alive connections, 1,000 at a time: each batch connected, its requests all sent,
# then its answers all read.
def flood(port, tls)
  (0...COUNT).each_slice(1000).flat_map do |batch|
    sockets = batch.map { connect(port, tls) }
    sockets.each { |socket| socket.write(REQUEST) }
    sockets.map { |socket| read_answer(socket) }
  end
end

# Sends "hi" (a masked text frame, the mask all zeros) and reads it back.
def echoed?(socket)
  socket.write("\x81\x82\x00\x00\x00\x00hi".b)
  socket.read(4) == "\x81\x02hi".b
end

def wait_for(port, tls)
  100.times do
    request(port, tls).close
    return
  rescue SystemCallError, OpenSSL::SSL::SSLError
    sleep 0.1
  end
  abort "bench/idle.rb: nothing answers on #{port}"
end

def p99_ms(port, scheme)
  out, = Open3.capture2('wrk', '-t1', '-c10', '-d3s', '--latency', "#{scheme}://127.0.0.1:#{port}/")
  value = out[/^\s+99%\s+(\S+)/, 1] or return Float::NAN
  number = value.to_f
  return number / 1000 if value.end_with?('us')
  return number if value.end_with?('ms')

  number * 1000
end

# `open` makes one connection of those held (a keep-alive one by default).
def measure(name, pid, port, tls, open: -> { request(port, tls) }, alive: nil)
  wait_for(port, tls)
  200.times { open.call.close } # warm
  sleep 1
  idle = rss_kb(pid)
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  held = FLOOD ? flood(port, tls) : Array.new(COUNT) { open.call }
  opened = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  sleep 1
  peak = rss_kb(pid)
  p99 = p99_ms(port, tls ? 'https' : 'http')
  alive ||= ->(s) { s.write(REQUEST) && s.readpartial(4096).end_with?('Hello') }
  alive = held.count { |s| alive.call(s) rescue false } # rubocop:disable Style/RescueModifier
  held.each(&:close)
  after = (1..6).map do
    sleep 5
    rss_kb(pid)
  end
  { name: name, idle: idle, held: peak, per: (peak - idle) * 1024.0 / COUNT, p99: p99, after: after, alive: alive,
    opened: opened }
ensure
  held&.each { |s| s.close unless s.closed? }
end

def report(r)
  mb = ->(kb) { format('%.1f', kb / 1024.0) }
  puts format('%-14s idle %7s MB  held %7s MB (+%s MB, %6.0f bytes/connection; opened in %.1f s, %d still answer)',
              r[:name], mb[r[:idle]], mb[r[:held]], mb[r[:held] - r[:idle]], r[:per], r[:opened], r[:alive])
  puts format('%-14s fresh requests while held: p99 %.1f ms', '', r[:p99])
  puts format('%-14s after closing, every 5 s: %s MB; at 30 s %+.1f MB from idle', '', r[:after].map(&mb).join(' '),
              (r[:after].last - r[:idle]) / 1024.0)
end

# tipi -w 1 on `port`: plain HTTP, or HTTPS with its self-signed certificate.
def tipi(port, tls: false, app: 'hello.ru')
  listen = tls ? ['-s', "127.0.0.1:#{port}"] : ['-l', "127.0.0.1:#{port}"]
  spawn(File.join(ROOT, 'exe', 'tipi'), '-q', '-e', 'production', '-w', '1', *listen,
        File.join(ROOT, 'bench', app), out: File::NULL, err: File::NULL, pgroup: true).tap { |pid| SERVERS << pid }
end

SERVERS = []
at_exit { SERVERS.each { |pid| Process.kill('KILL', -pid) rescue nil } } # rubocop:disable Style/RescueModifier

# Stops a server (its whole process group), however long its graceful stop would take.
def stop(pid)
  Process.kill('TERM', -pid)
  Process.kill('KILL', -pid) unless Process.wait2(pid, Process::WNOHANG) || (sleep(5) && Process.wait2(pid, Process::WNOHANG))
  Process.wait(pid)
rescue Errno::ESRCH, Errno::ECHILD
  nil
ensure
  SERVERS.delete(pid)
end

results = []
Dir.mktmpdir do |work|
  if ws
    %w[callbacks fiber].each do |style|
      port = free_port
      pid = tipi(port, app: 'websocket_echo.rb')
      results << measure("tipi WS #{style}", pid, port, nil, open: -> { websocket(port, "/#{style}") },
                                                               alive: method(:echoed?))
      stop(pid)
    end
  else
    port = free_port
    pid = tipi(port)
    results << measure('tipi -w 1', pid, port, nil)
    stop(pid)
  end

  if tls
    port = free_port
    pid = tipi(port, tls: true)
    context = OpenSSL::SSL::SSLContext.new
    context.verify_mode = OpenSSL::SSL::VERIFY_NONE
    results << measure('tipi -w 1 TLS', pid, port, context)
    stop(pid)
  end

  port = free_port
  File.write(File.join(work, 'nginx.conf'), <<~NGINX)
    daemon off;
    worker_processes 1;
    worker_rlimit_nofile #{COUNT + 1000};
    pid #{work}/nginx.pid;
    error_log #{work}/nginx-error.log;
    events { worker_connections #{COUNT + 500}; }
    http {
      access_log off;
      keepalive_timeout 120s;
      keepalive_requests 100000;
      client_body_temp_path #{work}; proxy_temp_path #{work}; fastcgi_temp_path #{work};
      uwsgi_temp_path #{work}; scgi_temp_path #{work};
      server {
        listen 127.0.0.1:#{port};
        location / { default_type text/plain; return 200 'Hello'; }
      }
    }
  NGINX
  pid = spawn('/usr/sbin/nginx', '-c', File.join(work, 'nginx.conf'), '-e', File.join(work, 'nginx-error.log'),
              out: File::NULL, err: File::NULL, pgroup: true)
  SERVERS << pid
  results << measure('nginx', pid, port, nil)
  stop(pid)
end

puts "#{COUNT} idle #{ws ? 'WebSockets (nginx: keep-alive connections)' : 'keep-alive connections'}#{' (a flood)' if FLOOD} " \
     "(RSS of all the server's processes)"
results.each { |r| report(r) }
tipi, nginx = results.first, results.last
if ws
  fiber = results[1]
  puts
  puts format('WebSockets by callbacks / by a fiber each, bytes per idle one: %.2fx (%.0f / %.0f)',
              tipi[:per] / fiber[:per], tipi[:per], fiber[:per])
end
puts
puts format('tipi / nginx, bytes per idle connection: %.1fx (%.0f / %.0f)', tipi[:per] / nginx[:per], tipi[:per], nginx[:per])
puts format('tipi: held %.1f MB above idle (goal <= 60), %.1f MB above idle 30 s after closing (goal <= 20), ' \
            'p99 %.1f ms while held (goal < 50)',
            (tipi[:held] - tipi[:idle]) / 1024.0, (tipi[:after].last - tipi[:idle]) / 1024.0, tipi[:p99])
