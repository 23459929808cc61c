# frozen_string_literal: true

# Fiber runtime benchmarks, each against plain Ruby measured in the same run:
#   1. switch cost: snooze between two fibers vs a two-fiber Fiber#transfer ping-pong
#   2. spin + await of 100,000 fibers, 10,000 alive at a time, vs Fiber.new + resume
#   3. message round trips between two fibers vs two threads over Thread::Queue
# Usage: ruby bench/fibers.rb [scale]   (scale 0.1 for a quick run)
require_relative '../lib/polyphony'

SCALE = (ARGV.first || 1).to_f

def measure
  GC.start
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  yield
  Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
end

def best_of(runs = 3, &block)
  Array.new(runs) { measure(&block) }.min
end

def report(title, ours_label, ours, peer_label, peer, unit, lower_is_better: true)
  ratio = ours / peer
  verdict = lower_is_better ? "#{format('%.2f', ratio)}x the peer's cost" : "#{format('%.2f', ratio)}x the peer's rate"
  puts title
  puts format('  %-34s %12.1f %s', ours_label, ours, unit)
  puts format('  %-34s %12.1f %s', peer_label, peer, unit)
  puts "  ratio: #{verdict}"
end

# 1. Switch cost
switches = (2_000_000 * SCALE).to_i
snooze_time = best_of do
  a = spin { (switches / 2).times { snooze } }
  b = spin { (switches / 2).times { snooze } }
  Fiber.await(a, b)
end
transfer_time = best_of do
  main = Fiber.current
  ping = pong = nil
  ping = Fiber.new do
    (switches / 2).times { pong.transfer }
    main.transfer
  end
  pong = Fiber.new { loop { ping.transfer } }
  ping.transfer
end
report('1. context switch (2 fibers)', 'Polyphony snooze', snooze_time / switches * 1e9,
       'Ruby Fiber#transfer ping-pong', transfer_time / switches * 1e9, 'ns/switch')

# 2. spin + await, 10,000 alive at a time
total = (100_000 * SCALE).to_i
batch = [10_000, total].min
spin_time = best_of do
  (total / batch).times { Fiber.await(Array.new(batch) { spin { :ok } }) }
end
bare_time = best_of do
  (total / batch).times do
    fibers = Array.new(batch) { Fiber.new { :ok } }
    fibers.each(&:resume)
  end
end
report("2. #{total} fibers, #{batch} alive at a time", 'spin + Fiber.await', spin_time * 1000,
       'Fiber.new + resume', bare_time * 1000, 'ms')
# The floor for bookkeeping kept on the Ruby side: one instance variable set and read on each
# fiber (a Fiber keeps its instance variables in a global table, as all non-plain objects do).
probe = Module.new do
  def __bench_state=(value)
    @__bench_state = value
  end

  def __bench_state
    @__bench_state
  end
end
Fiber.include(probe)
ivar_time = best_of do
  (total / batch).times do
    fibers = Array.new(batch) { Fiber.new { :ok }.tap { |f| f.__bench_state = f } }
    fibers.each(&:resume)
    fibers.each(&:__bench_state)
  end
end
puts format('  %-34s %12.1f ms (%.2fx bare: the floor for state a Ruby-side fiber keeps)',
            'Fiber.new + resume + 1 ivar each', ivar_time * 1000, ivar_time / bare_time)

# 3. Message round trips
trips = (200_000 * SCALE).to_i
mailbox_time = best_of do
  echo = spin { loop { peer, msg = Fiber.current.receive; peer << msg } }
  me = Fiber.current
  trips.times { |i| echo << [me, i]; Fiber.current.receive }
  echo.stop
  echo.await
end
thread_time = best_of do
  requests = Thread::Queue.new
  replies = Thread::Queue.new
  echo = Thread.new { loop { replies << requests.pop } }
  trips.times { |i| requests << i; replies.pop }
  echo.kill.join
end
report('3. message round trips between two fibers', 'fiber mailboxes', trips / mailbox_time,
       'threads over Thread::Queue', trips / thread_time, 'trips/s', lower_is_better: false)
puts "(#{RUBY_DESCRIPTION}; backend #{Polyphony.backend_kind})"
