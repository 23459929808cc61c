# frozen_string_literal: true

require 'socket'
require 'timeout'

# The Rack app the Tipi specs serve (behind Rack::Lint).
TIPI_APP = File.join(ROOT, 'spec', 'fixtures', 'tipi', 'app.ru')

# The real `tipi` command in a child process, its output read line by line.
class TipiProcess
  attr_reader :io, :lines

  # Starts `tipi *args` and reads its banner up to "Use Ctrl-C to stop".
  # @param spawn [Hash] more options for Process.spawn (rlimit_nofile: ...)
  def initialize(*args, env: {}, spawn: {})
    @io = IO.popen(env, [RbConfig.ruby, File.join(ROOT, 'exe', 'tipi'), *args], err: %i[child out], **spawn)
    @lines = []
    read_until(/Use Ctrl-C to stop/)
  end

  def pid
    @io.pid
  end

  # The first TCP listener's port.
  def port
    @lines.grep(%r{listening on http://}).first[/:(\d+)$/, 1].to_i
  end

  # Sends `request` (raw bytes) on a new connection to the first TCP listener, closes the
  # sending side, and returns all that comes back until the server closes.
  def raw(request)
    socket = TCPSocket.new('127.0.0.1', port)
    socket.write(request)
    socket.close_write
    socket.read.tap { socket.close }
  end

  # Worker pids from the latest banner.
  def workers
    @lines.grep(/\* worker \d+: pid/).map { |line| line[/pid (\d+)/, 1].to_i }
  end

  # Reads lines until one matches `pattern` (within `limit` seconds); returns that line.
  def read_until(pattern, limit: 30)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + limit
    loop do
      left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      ready = left.positive? && IO.select([@io], nil, nil, left)
      raise "no #{pattern.inspect} from tipi in #{limit} s; output:\n#{@lines.join}" unless ready

      line = @io.gets or raise "tipi ended before #{pattern.inspect}; output:\n#{@lines.join}"
      @lines << line
      return line if line.match?(pattern)
    end
  end

  # Waits until `count` lines read so far match `pattern`; returns them.
  def lines_matching(pattern, count)
    read_until(pattern) while @lines.grep(pattern).size < count
    @lines.grep(pattern)
  end

  def signal(name)
    Process.kill(name, pid)
  end

  # SIGTERM, then waits for the exit; returns the Process::Status.
  def stop
    signal('TERM') rescue Errno::ESRCH # rubocop:disable Style/RescueModifier
    Timeout.timeout(30) { Process.wait(pid) }
    $?.tap { @io.close }
  end
end
