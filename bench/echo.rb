# frozen_string_literal: true

# An echo server on Polyphony against a thread-per-connection echo server in plain Ruby, same
# run: 1,000 concurrent clients send 64-byte messages and wait for each echo, for a few
# seconds. The clients are bench/echo_client.c, a separate process on Polyphony's C event loop
# (cheap enough not to set the pace itself). Prints messages/s and the server's peak RSS for
# each, then the RSS of a Polyphony server holding 10,000 idle connections.
# Goal: at least 3x the threaded server's throughput at no more than 1/3 of its memory.
# A third server sets the ceiling of this machine: examples/c/echo_server.c, callbacks in C on
# the same event loop, no Ruby at all, against the same clients. (On a 2-core machine the
# clients and the kernel's loopback TCP take most of the CPU, whoever serves.)
#
# Usage: ruby bench/echo.rb [seconds] [clients]   (default 5, 1000)
require 'rbconfig'
require 'socket'
require 'tmpdir'

SECONDS = (ARGV[0] || 5).to_f
CLIENTS = (ARGV[1] || 1000).to_i
LIB = File.expand_path('../lib', __dir__)

SERVERS = {
  'Polyphony (fibers)' => <<~RUBY,
    require 'polyphony'
    server = TCPServer.new('127.0.0.1', 0)
    puts server.addr[1]; $stdout.flush
    server.accept_loop do |conn|
      spin { conn.read_loop { |data| conn.poly_write(data) } rescue nil; conn.close }
    end
  RUBY
  'threads (plain Ruby)' => <<~RUBY
    require 'socket'
    server = TCPServer.new('127.0.0.1', 0)
    puts server.addr[1]; $stdout.flush
    loop do
      Thread.new(server.accept) do |conn|
        while (data = (conn.readpartial(4096) rescue nil))
          conn.write(data)
        end
        conn.close
      end
    end
  RUBY
}.freeze

C_SERVER = 'C on the same loop (ceiling)'

# Builds a C program (the client, or the C server) against the release library.
def c_binary(source, name)
  root = File.expand_path('..', __dir__)
  system('cargo', 'build', '--release', '--locked', '-q', '-p', 'polyphony-capi', chdir: root, exception: true)
  binary = File.join(Dir.tmpdir, "polyphony_#{name}_#{Process.pid}")
  system('cc', '-O2', '-std=c11', '-D_DEFAULT_SOURCE', "-I#{root}/include", File.join(root, source),
         "#{root}/target/release/libpolyphony_capi.a", '-lpthread', '-ldl', '-lm', '-o', binary, exception: true)
  at_exit { File.delete(binary) if File.exist?(binary) }
  binary
end

def limit_files
  Process.setrlimit(:NOFILE, Process.getrlimit(:NOFILE)[1])
end

# Starts a server (a Ruby script, or a command), which prints its port first.
def start_server(script)
  command = script.is_a?(Array) ? script : [RbConfig.ruby, '-I', LIB, '-e', script]
  io = IO.popen(command)
  [io, io.gets.to_i]
end

def peak_rss_mb(pid)
  File.read("/proc/#{pid}/status")[/VmHWM:\s+(\d+)/, 1].to_i / 1024.0
end

def rss_mb(pid)
  File.read("/proc/#{pid}/status")[/VmRSS:\s+(\d+)/, 1].to_i / 1024.0
end

limit_files
client = c_binary('bench/echo_client.c', 'echo_client')
servers = SERVERS.merge(C_SERVER => [c_binary('examples/c/echo_server.c', 'echo_server')])
results = servers.to_h do |name, script|
  server, port = start_server(script)
  count = IO.popen([client, port.to_s, CLIENTS.to_s, SECONDS.to_s], &:read).to_i
  rss = peak_rss_mb(server.pid)
  Process.kill('KILL', server.pid)
  server.close
  [name, [count / SECONDS, rss]]
end

puts "echo, #{CLIENTS} concurrent clients, 64-byte messages, #{SECONDS} s (#{RUBY_DESCRIPTION})"
results.each { |name, (rate, rss)| puts format('  %-28s %10.0f messages/s   peak RSS %7.1f MB', name, rate, rss) }
(ours_rate, ours_rss), (theirs_rate, theirs_rss), (ceiling_rate, _) = results.values
puts format('  Polyphony: %.2fx the throughput at %.2fx the memory', ours_rate / theirs_rate, ours_rss / theirs_rss)
puts format('  ceiling (C, same loop): %.2fx the threaded server\'s throughput', ceiling_rate / theirs_rate)

# The memory floor: what 1,000 parked plain Ruby fibers and 1,000 plain Ruby threads blocked in
# a read cost, each in a fresh process (no Polyphony): the least a fiber per connection can take.
FLOOR = <<~RUBY
  def rss = File.read('/proc/self/status')[/VmRSS:\\s+(\\d+)/, 1].to_i
  GC.start
  before = rss
  keep = Array.new(1000) do
    reader, _writer = IO.pipe
    if ARGV[0] == 'fibers' then Fiber.new { Fiber.yield; reader.read(1) }.tap(&:resume)
    else Thread.new { reader.read(1) }.tap { Thread.pass }
    end
  end
  sleep 0.5
  GC.start
  puts format('%.1f', (rss - before) / 1000.0)
  keep.size
RUBY
floor = %w[fibers threads].to_h { |kind| [kind, IO.popen([RbConfig.ruby, '-e', FLOOR, kind], &:read).to_f] }
puts format('memory floor, plain Ruby: a parked fiber %.1f KB, a thread blocked in a read %.1f KB',
            floor['fibers'], floor['threads'])

# 10,000 idle connections held by one Polyphony server.
server, port = start_server(SERVERS['Polyphony (fibers)'])
before = rss_mb(server.pid)
idle = Array.new(10_000) { TCPSocket.new('127.0.0.1', port) }
sleep 2 # the server accepts them all and spins a fiber for each
puts format('10,000 idle connections: Polyphony server RSS %.1f MB (%.1f MB before them)', rss_mb(server.pid), before)
idle.each(&:close)
Process.kill('KILL', server.pid)
server.close
