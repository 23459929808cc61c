# frozen_string_literal: true

# Polyphony's API as its documentation and its own test suite state it. Each case runs in a
# child Ruby with a time limit, so that a hang fails the example instead of the suite.
RSpec.describe "Polyphony's API, as documented" do
  it 'never loses a timeout that falls due with a sleep' do
    out = run_with_polyphony(<<~RUBY)
      late = 20.times.count do
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        move_on_after(0.01) { sleep 0.01; sleep 0.2 }
        Process.clock_gettime(Process::CLOCK_MONOTONIC) - started > 0.15
      end
      p late
    RUBY
    expect(out).to eq("0\n")
  end

  it 'raises a SIGINT in the main fiber while it awaits a child, not in the child' do
    script = <<~RUBY
      $stdout.sync = true
      begin
        result = spin do
          puts :ready
          sleep 3
        rescue Interrupt
          :child_caught_it
        end.await
        p [:await_returned, result]
      rescue Interrupt
        p :interrupted
      end
    RUBY
    Open3.popen2(RbConfig.ruby, '-I', File.join(ROOT, 'lib'), '-rpolyphony', '-e', script) do |_in, out, waiter|
      expect(out.gets).to eq("ready\n")
      sleep 0.3 # (the child now waits in the kernel)
      Process.kill('INT', waiter.pid)
      expect(out.read).to eq(":interrupted\n")
      expect(waiter.value).to be_success
    end
  end

  it 'returns from suspend in the main fiber once no other fiber has work left' do
    out = run_with_polyphony(<<~RUBY)
      done = []
      spin { sleep 0.02; done << 1 }
      spin { sleep 0.05; done << 2 }
      suspend
      p done
    RUBY
    expect(out).to eq("[1, 2]\n")
  end

  it 'times Thread#join out while another fiber is alive' do
    out = run_with_polyphony(<<~RUBY)
      spin { sleep 2 }
      thread = Thread.new { Kernel.sleep 1 }
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      p [thread.join(0.01), Process.clock_gettime(Process::CLOCK_MONOTONIC) - started < 0.5]
      thread.kill
    RUBY
    expect(out).to eq("[nil, true]\n")
  end

  it 'iterates an Enumerator externally over IO#gets on a pipe fed by a fiber' do
    out = run_with_polyphony(<<~RUBY)
      r, w = IO.pipe
      spin { w.puts 'a', 'b'; w.close }
      lines = Enumerator.new { |y| while (line = r.gets); y << line; end }
      p [lines.next, lines.next]
    RUBY
    expect(out).to eq("[\"a\\n\", \"b\\n\"]\n")
  end

  it 'reads Kernel#gets from a $stdin pipe fed by a fiber' do
    out = run_with_polyphony(<<~RUBY)
      r, w = IO.pipe
      $stdin = r
      spin { sleep 0.01; w.puts 'typed'; w.close }
      p gets
    RUBY
    expect(out).to eq("\"typed\\n\"\n")
  end

  it 'receives UDP datagrams with recvfrom in a fiber' do
    out = run_with_polyphony(<<~RUBY)
      a = UDPSocket.new
      a.bind('127.0.0.1', 0)
      b = UDPSocket.new
      reader = spin { a.recvfrom(100).first }
      spin { sleep 0.01; b.send('datagram', 0, '127.0.0.1', a.addr[1]) }
      p reader.await
    RUBY
    expect(out).to eq("\"datagram\"\n")
  end

  it 'passes the value of restart to the block of a dead fiber' do
    out = run_with_polyphony(<<~RUBY)
      fiber = spin { |value| value }
      fiber.await
      p fiber.restart(42).await
    RUBY
    expect(out).to eq("42\n")
  end

  it 'ends spin_loop at break' do
    out = run_with_polyphony(<<~RUBY)
      count = 0
      fiber = spin_loop do
        count += 1
        break if count == 5
      end
      fiber.await
      p [count, fiber.alive?]
    RUBY
    expect(out).to eq("[5, false]\n")
  end

  it 'runs the block of Polyphony::Timer#every in the calling fiber, until stopped' do
    out = run_with_polyphony(<<~RUBY)
      timer = Polyphony::Timer.new(resolution: 0.001)
      ticks = 0
      ticker = spin { timer.every(0.01) { ticks += 1 } }
      sleep 0.055
      ticker.stop
      p ticks.between?(3, 6)
    RUBY
    expect(out).to eq("true\n")
  end

  it 'lets a pusher waiting on a full capped queue in when an item is deleted' do
    out = run_with_polyphony(<<~RUBY)
      queue = Polyphony::Queue.new(1)
      queue << :a
      pusher = spin { queue << :b; :pushed }
      snooze
      queue.delete(:a)
      p [pusher.await, queue.shift]
    RUBY
    expect(out).to eq("[:pushed, :b]\n")
  end

  it 'supervises children spun after supervise started' do
    out = run_with_polyphony(<<~RUBY)
      ended = []
      supervisor = spin do
        spin(:first) { sleep 0.01 }
        supervise { |fiber, _result| ended << fiber.tag }
      end
      snooze
      supervisor.spin(:late) { sleep 0.02 }
      supervisor.await
      p ended
    RUBY
    expect(out).to eq("[:first, :late]\n")
  end

  it "closes a Polyphony.pipe's write end with close" do
    out = run_with_polyphony(<<~RUBY)
      pipe = Polyphony.pipe
      reader = spin { pipe.read }
      pipe << 'all'
      pipe.close
      p reader.await
    RUBY
    expect(out).to eq("\"all\"\n")
  end

  it 'runs fibers spun in an at_exit block' do
    out = run_with_polyphony(<<~RUBY)
      at_exit { spin { sleep 0.01; puts 'ran' }.await }
    RUBY
    expect(out).to eq("ran\n")
  end

  describe 'smaller points' do
    it 'takes terminate(graceful: true) as a keyword too' do
      out = run_with_polyphony(<<~RUBY)
        fiber = spin do
          suspend
        ensure
          p Fiber.current.graceful_shutdown?
        end
        snooze
        fiber.terminate(graceful: false)
        fiber.await
      RUBY
      expect(out).to eq("false\n")
    end

    it "runs terminated children's ensure blocks in spin order" do
      out = run_with_polyphony(<<~RUBY)
        order = []
        3.times do |i|
          spin do
            suspend
          ensure
            order << i
          end
        end
        snooze
        Fiber.current.terminate_all_children
        Fiber.current.await_all_children
        p order
      RUBY
      expect(out).to eq("[0, 1, 2]\n")
    end

    it 'counts signals of an Event before its await once' do
      out = run_with_polyphony(<<~RUBY)
        event = Polyphony::Event.new
        3.times { event.signal }
        event.await
        p move_on_after(0.05, with_value: :waits) { event.await; :returned }
      RUBY
      expect(out).to eq(":waits\n")
    end

    it 'hands the same resource to a nested acquire in the same fiber' do
      out = run_with_polyphony(<<~RUBY)
        made = 0
        pool = Polyphony::ResourcePool.new(limit: 1) { made += 1; Object.new }
        p(pool.acquire { |outer| pool.acquire { |inner| inner.equal?(outer) } })
        p made
      RUBY
      expect(out).to eq("true\n1\n")
    end

    it 'lets the holder of a Polyphony::Mutex lock it again' do
      out = run_with_polyphony(<<~RUBY)
        mutex = Polyphony::Mutex.new
        p(mutex.synchronize { mutex.synchronize { :nested } })
      RUBY
      expect(out).to eq(":nested\n")
    end
  end
end
