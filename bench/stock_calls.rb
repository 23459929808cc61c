# frozen_string_literal: true

# What loading Polyphony costs code that never spins a fiber: IO#write, IO#gets, IO#read and
# sleep(0) in the main thread, each timed (CPU time of the process, steadier than wall time on
# shared cores) in child Rubies without Polyphony and with it, alternated three times, best of
# 3 runs in each. Writes go to /dev/null through a plain IO (a File would be
# exempt from the root-fiber wrappers), reads come from a file's lines through a plain IO.
# Usage: ruby bench/stock_calls.rb [calls]   (default 1,000,000)
require 'rbconfig'
require 'tempfile'

CALLS = (ARGV.first || 1_000_000).to_i
LIB = ENV.fetch('POLYPHONY_LIB', File.expand_path('../lib', __dir__))
lines = Tempfile.new('lines')
lines.write("a line of forty bytes, more or less....\n" * CALLS)
lines.flush

CASES = {
  'IO#write 1 byte' => <<~RUBY,
    io = IO.new(IO.sysopen('/dev/null', 'w'))
    io.sync = true
    -> { CALLS.times { io.write('x') } }
  RUBY
  # With Polyphony, the wrappers are in place once a fiber has been spun: their cost.
  'IO#write, fiber ran' => <<~RUBY,
    spin {}.await if defined?(Polyphony)
    io = IO.new(IO.sysopen('/dev/null', 'w'))
    io.sync = true
    -> { CALLS.times { io.write('x') } }
  RUBY
  'IO#gets' => <<~RUBY,
    io = IO.new(IO.sysopen(#{lines.path.inspect}))
    -> { CALLS.times { io.gets } }
  RUBY
  'IO#read 1 byte' => <<~RUBY,
    io = IO.new(IO.sysopen(#{lines.path.inspect}))
    -> { CALLS.times { io.read(1) } }
  RUBY
  'sleep(0)' => <<~RUBY
    -> { (CALLS / 10).times { sleep(0) } }
  RUBY
}.freeze

# CPU nanoseconds per call of `setup`'s lambda in a child Ruby, best of 3.
def per_call(setup, polyphony)
  script = <<~RUBY
    CALLS = #{CALLS}
    run = begin
      #{setup}
    end
    best = 3.times.map do
      started = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
      run.call
      Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - started
    end.min
    print best
  RUBY
  args = [RbConfig.ruby]
  args += ['-I', LIB, '-rpolyphony'] if polyphony
  out = IO.popen([*args, '-e', script], &:read)
  calls = setup.include?('CALLS / 10') ? CALLS / 10 : CALLS
  Float(out) / calls * 1e9
end

puts format('%-22s %14s %16s %8s', 'call', 'stock ns/call', 'polyphony ns/call', 'ratio')
CASES.each do |name, setup|
  stock, ours = Array.new(3) { [per_call(setup, false), per_call(setup, true)] }.transpose.map(&:min)
  puts format('%-22s %14.0f %16.0f %8.2f', name, stock, ours, ours / stock)
end
