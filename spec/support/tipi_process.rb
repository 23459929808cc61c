# frozen_string_literal: true

require 'socket'
require 'tempfile'
require 'timeout'

# The Rack app the Tipi specs serve (behind Rack::Lint).
TIPI_APP = File.join(ROOT, 'spec', 'fixtures', 'tipi', 'app.ru')

# The real `tipi` command in a child process, its output read line by line.
class TipiProcess
  attr_reader :lines

  # Starts `tipi *args` and reads its banner up to "Use Ctrl-C to stop".
  # @param spawn [Hash] more options for Process.spawn (rlimit_nofile: ...)
  # @param exe [String] the tipi command to run (an installed gem's, say)
  def initialize(*args, env: {}, spawn: {}, exe: File.join(ROOT, 'exe', 'tipi'))
    # The output goes to a file, read as the spec asks: a pipe nobody reads would fill with
    # the access log, and the server would wait on it (and stop nowhere).
    @output = Tempfile.new('tipi-output')
    @pid = Process.spawn(env, RbConfig.ruby, exe, *args,
                         out: @output.path, err: %i[child out], **spawn)
    @unread = +''
    @lines = []
    read_until(/Use Ctrl-C to stop/)
  end

  attr_reader :pid

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
      line = next_line(deadline)
      raise "no #{pattern.inspect} from tipi in #{limit} s; output:\n#{@lines.join}" if line == :late
      raise "tipi ended before #{pattern.inspect}; output:\n#{@lines.join}" unless line

      @lines << line
      return line if line.match?(pattern)
    end
  end

  # The next line of output; nil once the server has exited and it is all read; :late past
  # `deadline`.
  def next_line(deadline)
    loop do
      newline = @unread.index("\n")
      return @unread.slice!(0..newline) if newline

      chunk = @output.read(65_536)
      next @unread << chunk if chunk
      return nil if exited?
      return :late if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.01
    end
  end

  def exited?
    @status ||= Process.wait2(@pid, Process::WNOHANG)&.last
  end

  # Waits until `count` lines read so far match `pattern`; returns them.
  def lines_matching(pattern, count)
    read_until(pattern) while @lines.grep(pattern).size < count
    @lines.grep(pattern)
  end

  def stopped?
    @stopped || false
  end

  def signal(name)
    Process.kill(name, pid)
  end

  # SIGTERM, then waits for the exit; returns the Process::Status.
  def stop
    signal('TERM') rescue Errno::ESRCH # rubocop:disable Style/RescueModifier
    Timeout.timeout(30) { @status ||= Process.wait2(pid).last }
    @output.close!
    @stopped = true
    @status
  end
end
