# frozen_string_literal: true

RSpec.describe Polyphony::Backend do
  it 'reports its kind: io_uring here unless POLYPHONY_BACKEND says otherwise' do
    expect(Polyphony.backend_kind).to eq((ENV['POLYPHONY_BACKEND'] || 'io_uring').to_sym)
    expect(Polyphony.backend).to be_a(described_class)
    expect(Polyphony.backend_for(Thread.current)).to equal(Polyphony.backend)
  end

  it 'is chosen by POLYPHONY_BACKEND, and a wrong name fails at require with a clear error' do
    script = 'require "polyphony"; puts Polyphony.backend_kind; puts spin { :ran }.await'
    %w[io_uring epoll].each do |kind|
      out, _err, status = run_command({ 'POLYPHONY_BACKEND' => kind }, RbConfig.ruby, '-Ilib', '-e', script)
      expect([status.success?, out]).to eq([true, "#{kind}\nran\n"])
    end
    _out, err, status = run_command({ 'POLYPHONY_BACKEND' => 'kqueue' }, RbConfig.ruby, '-Ilib', '-e', script)
    expect(status).not_to be_success
    expect(err).to include('POLYPHONY_BACKEND must be io_uring or epoll, not "kqueue"')
  end

  it 'keeps fibers referenced only from the Rust run queue alive through GC.compact and GC.stress' do
    results = []
    200.times do |i|
      # Nothing in Ruby refers to these fibers: only the backend's run queue does.
      Polyphony.__schedule__(Fiber.new { results << i; Polyphony::FIBER_DONE }, nil, false)
    end
    GC.start
    GC.compact if GC.respond_to?(:compact)
    begin
      GC.stress = true
      snooze
    ensure
      GC.stress = false
    end
    expect(results).to eq((0...200).to_a)
  end

  it 'spins, runs and ends fibers under GC.stress (launchers are made while the GC runs)' do
    # A fresh process: its pool has no idle launcher, so each fiber here makes one.
    out, err, status = run_ruby(<<~RUBY)
      require 'polyphony'
      GC.stress = true
      fibers = Array.new(4) { |i| spin { snooze; i } }
      p Fiber.await(fibers)
    RUBY
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq("[0, 1, 2, 3]\n")
  end

  it 'keeps sleeping fibers (referenced from the timer heap) alive through GC' do
    done = []
    50.times { |i| spin { sleep 0.001 * (i % 5); done << i } }
    GC.start
    GC.compact if GC.respond_to?(:compact)
    Fiber.current.await_all_children
    expect(done.sort).to eq((0...50).to_a)
  end

  it 'lets other threads run while it waits in the kernel' do
    counter = 0
    thread = Thread.new { 100_000.times { counter += 1 } }
    sleep 0.2
    expect(counter).to eq(100_000)
    thread.join
  end

  it 'is interrupted promptly by Thread#raise and Thread#kill' do
    waiter = Thread.new do
      sleep 10
    rescue StandardError => e
      e.message
    end
    Kernel.sleep 0.05
    started = monotonic
    waiter.raise('wake up')
    expect(waiter.value).to eq('wake up')
    expect(monotonic - started).to be < 0.5

    victim = Thread.new { sleep 10 }
    Kernel.sleep 0.05
    started = monotonic
    victim.kill
    victim.join
    expect(monotonic - started).to be < 0.5
  end

  it 'runs trap handlers promptly while fibers wait' do
    out, _err, status = run_ruby(<<~RUBY)
      require 'polyphony'
      trap('USR1') { puts 'trapped'; $stdout.flush }
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      Thread.new { Kernel.sleep 0.05; Process.kill('USR1', Process.pid) }
      sleep 0.3
      puts Process.clock_gettime(Process::CLOCK_MONOTONIC) - started >= 0.29
    RUBY
    expect(status).to be_success
    expect(out).to eq("trapped\ntrue\n")
  end

  it 'lets a trap handler switch fibers itself (sleep, spin) while fibers wait' do
    out, err, status = run_ruby(<<~RUBY)
      require 'polyphony'
      trap('USR1') { sleep 0.01; puts spin { :spun_in_trap }.await; $stdout.flush }
      worker = spin { sleep 0.2; :worker }
      Thread.new { Kernel.sleep 0.05; Process.kill('USR1', Process.pid) }
      puts worker.await
    RUBY
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq("spun_in_trap\nworker\n")
  end

  it 'schedules a fiber from another thread, waking its backend' do
    fiber = spin { suspend }
    snooze
    Thread.new { fiber.schedule(:from_thread) }.join
    expect(fiber.await).to eq(:from_thread)
  end

  it 'gives each thread its own backend and fiber tree' do
    values = Array.new(3) do |i|
      Thread.new do
        f = spin { sleep 0.01; i * 10 }
        [f.await, Polyphony.backend.object_id]
      end
    end.map(&:value)
    expect(values.map(&:first)).to eq([0, 10, 20])
    expect(values.map(&:last).uniq.size).to eq(3)
  end

  it 'gives a forked child a fresh backend' do
    out, _err, status = run_ruby(<<~RUBY)
      require 'polyphony'
      parent_backend = Polyphony.backend.object_id
      spin { sleep 0.01 }.await
      pid = fork do
        f = spin { sleep 0.01; :child_ok }
        puts f.await
        puts Polyphony.backend.object_id != parent_backend
      end
      Process.wait(pid)
      puts $?.success?
    RUBY
    expect(status).to be_success
    expect(out).to eq("child_ok\ntrue\ntrue\n")
  end

  it "frees a finished fiber's stack at once: churning fibers does not wait for the GC" do
    # Fiber stacks are mappings, ~31,000 at most by default; stacks left to the GC would run
    # out ("can't set a guard page") long before 60,000 fibers.
    out, err, status = run_ruby(<<~RUBY)
      require 'polyphony'
      GC.disable
      60_000.times { |i| raise 'wrong result' unless spin { i }.await == i }
      puts :ok
    RUBY
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq("ok\n")
  end

  it 'runs more simultaneous fibers than it keeps launchers for' do
    fibers = Array.new(5000) { |i| spin { suspend; i } }
    snooze
    fibers.each(&:schedule)
    expect(Fiber.await(fibers)).to eq((0...5000).to_a)
  end

  it 'carries on in a forked child whose fork happened inside a spun fiber' do
    out, _err, status = run_ruby(<<~RUBY)
      require 'polyphony'
      pid = nil
      spin do
        pid = fork do
          puts spin { :first }.await
          puts spin { :second }.await
        end
      end.await
      Process.wait(pid)
      puts $?.success?
    RUBY
    expect(status).to be_success
    expect(out).to eq("first\nsecond\ntrue\n")
  end

  it 'switches many times without losing fibers' do
    counts = Array.new(10, 0)
    10.times { |i| spin { 1000.times { counts[i] += 1; snooze } } }
    Fiber.current.await_all_children
    expect(counts).to all(eq(1000))
    expect(Polyphony.__stats__[:runqueue_size]).to eq(0)
  end
end
