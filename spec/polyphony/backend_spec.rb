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

  describe 'idle reads (Polyphony.__read_idle__) under Polyphony.__idle_limit__' do
    # Runs `body` in a child Ruby (no fiber of another example alive there to count) with
    # `pairs`: five socket pairs, each `[ours, peer]`; what it prints, each line parsed.
    def run_with_pairs(body)
      out, err, status = run_ruby(<<~RUBY)
        require 'polyphony'
        require 'socket'
        pairs = Array.new(5) { UNIXSocket.pair }
        #{body}
      RUBY
      expect([err, status.success?]).to eq(['', true])
      out.lines.map { |line| eval(line) } # rubocop:disable Security/Eval
    end

    it 'interrupts the oldest beyond the limit once the thread has nothing to do, losing nothing' do
      alive, interrupted, read, left = run_with_pairs(<<~RUBY)
        Polyphony.__idle_limit__ = 3
        readers = pairs.map { |ours, _| spin { Polyphony.__read_idle__(ours, 100) } }
        # (The thread waits in the kernel: the crowd is thinned after a millisecond.)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
        sleep 0.01 until readers.count(&:alive?) <= 3 || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        p readers.map(&:alive?)
        p readers.first(2).map(&:await)
        pairs.each_with_index { |(_, peer), i| peer.write("message \#{i}") }
        p readers.drop(2).map(&:await)
        # The interrupted reads took nothing: their bytes wait in their sockets.
        p pairs.first(2).map { |ours, _| ours.read_nonblock(100) }
      RUBY
      expect(alive).to eq([false, false, true, true, true])
      expect(interrupted).to eq(%i[idle idle])
      expect(read).to eq(['message 2', 'message 3', 'message 4'])
      expect(left).to eq(['message 0', 'message 1'])
    end

    it 'lets none wait once twice the limit of fibers are alive, yet reads what is there' do
      alive, results, thinned = run_with_pairs(<<~RUBY)
        Polyphony.__idle_limit__ = 2
        pairs.last.last.write('ready')
        readers = pairs.map { |ours, _| spin { Polyphony.__read_idle__(ours, 100) } }
        snooze
        # The fourth and fifth find four fibers alive: the fourth is not let wait, the fifth
        # reads its bytes at once.
        p readers.map(&:alive?)
        p readers.drop(3).map(&:await)
        p Polyphony.__stats__[:idle_thinned]
      RUBY
      expect(alive).to eq([true, true, true, false, false])
      expect(results).to eq([:idle, 'ready'])
      expect(thinned).to eq(1) # (the fifth had no need to wait)
    end

    it 'lets them all wait with no limit (the default)' do
      alive, results = run_with_pairs(<<~RUBY)
        readers = pairs.map { |ours, _| spin { Polyphony.__read_idle__(ours, 100) } }
        sleep 0.05
        p readers.map(&:alive?)
        pairs.each_with_index { |(_, peer), i| peer.write(i.to_s) }
        p readers.map(&:await)
      RUBY
      expect(alive).to eq([true] * 5)
      expect(results).to eq(%w[0 1 2 3 4])
    end

    it 'takes a positive count, or nil' do
      expect { Polyphony.__idle_limit__ = 0 }.to raise_error(ArgumentError, /positive/)
      expect { Polyphony.__idle_limit__ = -1 }.to raise_error(RangeError)
    ensure
      Polyphony.__idle_limit__ = nil
    end
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
