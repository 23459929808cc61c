# frozen_string_literal: true

require 'stringio'
require 'zlib'

# The rest of Polyphony's documented API (issue 24): interjections, kill, callers and backtrace
# chaining, spin_scope, Thread's await and idle hooks, fiber-aware condition variables and
# monitors, the canceller fiber of cancel_after / move_on_after, Timer#reset, and the IO
# additions.
RSpec.describe "Polyphony's API, the rest of it" do
  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  describe 'Fiber#interject' do
    it 'runs the block in the fiber where it waits, then lets the wait go on' do
      events = []
      sleeper = spin do
        started = monotonic
        sleep 0.1
        events << [:slept, (monotonic - started).round(1)]
      end
      snooze
      sleeper.interject { events << [:interjected, Fiber.current.equal?(sleeper)] }
      sleeper.await
      expect(events).to eq([[:interjected, true], [:slept, 0.1]])
    end

    it 'loses no I/O completion that races with interjections' do
      reader, writer = IO.pipe
      received = +''
      consumer = spin { reader.read_loop { |data| received << data } }
      interjections = 0
      200.times do |i|
        consumer.interject { interjections += 1 }
        writer.write("#{i},")
        snooze if i.even?
      end
      writer.close
      consumer.await
      expect(received.split(',').map(&:to_i)).to eq((0...200).to_a)
      expect(interjections).to eq(200)
    ensure
      reader&.close
    end

    it 'raises what the block raises at the wait, and refuses dead fibers' do
      waiter = spin do
        sleep 1
      rescue RuntimeError => e
        [:rescued, e.message]
      end
      snooze
      waiter.interject { raise 'from the interjection' }
      expect(waiter.await).to eq([:rescued, 'from the interjection'])
      expect { waiter.interject { nil } }.to raise_error(FiberError, /dead/)
      expect(Fiber.current.interject { :ran_now }).to equal(Fiber.current)
    end
  end

  describe 'Fiber#kill' do
    it 'ends a spun fiber, ensure blocks and children included, before returning' do
      events = []
      fiber = spin do
        spin do
          sleep 1
        ensure
          events << :child_ensure
        end
        sleep 1
      ensure
        events << :ensure
      end
      sleep 0.01 # (both have started: a fiber stopped before it starts runs nothing)
      expect(fiber.kill).to equal(fiber)
      expect(fiber).to be_dead
      expect(events).to eq(%i[ensure child_ensure])
      expect(fiber.kill).to equal(fiber)
    end

    it "leaves a fiber Polyphony did not spin to Ruby's own Fiber#kill (or its absence)" do
      expect_same_as_stock(<<~RUBY)
        fiber = Fiber.new { Fiber.yield }
        fiber.resume
        p(begin; fiber.kill; fiber.alive?; rescue NoMethodError => e; e.class; end)
      RUBY
    end
  end

  describe 'callers and backtrace chaining' do
    it "appends the spinning fibers' locations to an exception that reaches a parent" do
      out = run_with_polyphony(<<~RUBY)
        def fail! = raise('boom')
        outer = spin do   # line 2
          spin do         # line 3
            fail!
          end.await
        end
        begin
          outer.await
        rescue => e
          puts e.backtrace.map { |line| line.sub(/^-e:/, '') }
          p e.backtrace.grep(%r{lib/polyphony}).size
        end
      RUBY
      lines = out.lines.map(&:chomp)
      expect(lines.first(2)).to eq(["1:in `fail!'", "4:in `block (2 levels) in <main>'"])
      expect(lines[2..3]).to eq(%w[3 2])
      expect(lines.last).to eq('0')
    end

    it 'records whole callers with :full, keeps Polyphony frames on request, and stays out when off' do
      out = run_with_polyphony(<<~RUBY)
        def spinner = spin { spin { raise 'x' }.await }
        Polyphony.backtrace_chaining = :full
        trace = begin; spinner.await; rescue => e; e.backtrace; end
        p trace.grep(/in `spinner'/).size, trace.grep(/<main>/).size
        p spin { Fiber.current.caller }.await.grep(/<main>/).size
        Exception.__disable_sanitized_backtrace__ = true
        trace = begin; spinner.await; rescue => e; e.backtrace; end
        p trace.grep(%r{lib/polyphony/}).empty?
        Exception.__disable_sanitized_backtrace__ = false
        Polyphony.backtrace_chaining = false
        trace = begin; spin { raise 'y' }.await; rescue => e; e.backtrace; end
        p trace.size == trace.take_while { |line| !line.start_with?('-e:5') }.size
        p(begin; Polyphony.backtrace_chaining = :everything; rescue ArgumentError => e; e.class; end)
      RUBY
      expect(out).to eq("1\n1\n1\nfalse\ntrue\nArgumentError\n")
    end

    it 'gives Fiber#caller without recording anything by default' do
      fiber = spin { Fiber.current.caller }
      expect(fiber.await).to eq(["#{__FILE__}:#{__LINE__ - 1}"])
    end
  end

  describe 'smaller entries' do
    it 'has move_on, graceful_shutdown=, monitors and attach_and_monitor on fibers' do
      quiet = spin { sleep 1 }
      snooze
      quiet.move_on(:moved)
      expect(quiet.await).to eq(:moved)
      worker = spin { sleep 1 }
      worker.graceful_shutdown = true
      expect(worker.graceful_shutdown?).to be(true)
      supervisor = spin { sleep 1 }
      worker.attach_and_monitor(supervisor)
      expect([worker.parent, worker.monitors]).to eq([supervisor, [supervisor]])
      worker.stop
      expect(supervisor.monitor_mailbox.shift).to eq([worker, nil])
      supervisor.stop
    end

    it 'flushes the fibers waiting on a queue with a value, and keeps Throttler#stop harmless' do
      queue = Polyphony::Queue.new
      waiters = 2.times.map { spin { queue.shift } }
      snooze
      queue.flush_waiters(:flushed)
      expect(Fiber.await(waiters)).to eq(%i[flushed flushed])
      queue << :item
      expect(queue.shift).to eq(:item)
      throttler = Polyphony::Throttler.new(100)
      expect(throttler.stop).to equal(throttler)
      expect(throttler.call { :ran }).to eq(:ran)
    end

    it 'accepts connections on a raw Socket with accept_loop' do
      server = Socket.new(:INET, :STREAM)
      server.bind(Addrinfo.tcp('127.0.0.1', 0))
      server.listen(8)
      accepted = Polyphony::Queue.new
      acceptor = spin { server.accept_loop { |socket| accepted << socket } }
      client = TCPSocket.new('127.0.0.1', server.local_address.ip_port)
      socket = accepted.shift
      expect(socket).to be_a(Socket)
      socket.write('hi')
      expect(client.read(2)).to eq('hi')
      acceptor.stop
    ensure
      [server, client, socket].each { |io| io&.close }
    end
  end

  describe 'spin_scope' do
    it 'waits for the fibers spun within, and raises what one of them raised' do
      done = []
      value = spin_scope do
        spin { sleep 0.02; done << :first }
        spin { spin { sleep 0.01; done << :grandchild }.await; done << :second }
        :scope_value
      end
      expect([value, done]).to eq([:scope_value, %i[grandchild second first]])
      expect { spin_scope { spin { raise 'inside' }; sleep 1 } }.to raise_error(RuntimeError, 'inside')
    end
  end

  describe 'Thread' do
    it 'awaits a thread for its value, letting fibers run, with an optional timeout' do
      ticks = 0
      ticker = spin_loop { sleep 0.005; ticks += 1 }
      expect(Thread.new { sleep 0.05; :value }.await).to eq(:value)
      ticker.stop
      expect(ticks).to be > 3
      slow = Thread.new { sleep 0.3; :late }
      expect(slow.await(0.02)).to be_nil
      expect(slow.await).to eq(:late)
      failing = Thread.new { raise 'in thread' }
      failing.report_on_exception = false
      expect { failing.await }.to raise_error(RuntimeError, 'in thread')
    end

    it 'calls the on_idle block and runs idle GCs before waiting with nothing to run' do
      out = run_with_polyphony(<<~RUBY)
        idles = 0
        Thread.current.on_idle { idles += 1 }
        spin { 3.times { sleep 0.01 } }.await
        Thread.current.on_idle
        p idles >= 3
        GC.start
        before = GC.count
        # (Each wait runs a GC when 10 ms passed since the last one ended: with a GC that
        # takes long on a busy machine, a wait may come too soon after it.)
        Thread.current.idle_gc_period = 0.01
        spin { 5.times { sleep 0.03 } }.await
        p GC.count - before >= 2
        Thread.current.idle_gc_period = nil
        before = GC.count
        spin { 4.times { sleep 0.02 } }.await
        p GC.count - before
        other = Thread.new { sleep 0.1 }
        p(begin; other.on_idle {}; rescue ThreadError => e; e.class; end)
        p(begin; Thread.current.idle_gc_period = -1; rescue ArgumentError => e; e.class; end)
      RUBY
      expect(out).to eq("true\ntrue\n0\nThreadError\nArgumentError\n")
    end
  end

  describe 'Polyphony::ConditionVariable' do
    it 'releases the mutex while waiting and wakes waiters in order' do
      mutex = Polyphony::Mutex.new
      cond = Polyphony::ConditionVariable.new
      woken = []
      waiters = 3.times.map do |i|
        spin { mutex.synchronize { cond.wait(mutex); woken << i; mutex.owned? } }
      end
      snooze
      mutex.synchronize { cond.signal }
      snooze
      expect(woken).to eq([0])
      mutex.synchronize { cond.broadcast }
      expect(Fiber.await(waiters)).to eq([true, true, true])
      expect(woken).to eq([0, 1, 2])
    end

    it 'times a wait out and takes the mutex back' do
      mutex = Polyphony::Mutex.new
      cond = Polyphony::ConditionVariable.new
      started = monotonic
      held = mutex.synchronize { cond.wait(mutex, 0.02); mutex.owned? }
      expect(held).to be(true)
      expect(monotonic - started).to be_between(0.015, 0.5)
    end
  end

  describe 'Polyphony::Monitor' do
    it 'is re-entrant for its fiber and makes other fibers wait their turn' do
      monitor = Polyphony::Monitor.new
      order = []
      holder = spin do
        monitor.synchronize do
          monitor.synchronize { order << :nested; sleep 0.02 }
          order << :outer
        end
      end
      other = spin { monitor.synchronize { order << :other } }
      Fiber.await(holder, other)
      expect(order).to eq(%i[nested outer other])
      expect([monitor.mon_locked?, monitor.try_enter, monitor.try_enter, monitor.mon_owned?]).to eq([false, true, true, true])
      2.times { monitor.exit }
      expect(monitor.mon_locked?).to be(false)
      expect { monitor.exit }.to raise_error(ThreadError)
    end

    it 'releases every level while a condition waits, and restores them' do
      monitor = Polyphony::Monitor.new
      cond = monitor.new_cond
      items = []
      consumer = spin do
        monitor.synchronize do
          monitor.synchronize do
            cond.wait_while { items.empty? }
            [items.shift, monitor.mon_owned?]
          end
        end
      end
      snooze
      spin { monitor.synchronize { items << :item; cond.signal } }.await
      expect(consumer.await).to eq([:item, true])
      expect(monitor.mon_locked?).to be(false)
    end
  end

  describe 'the canceller fiber of cancel_after and move_on_after' do
    it 'gives a block that takes an argument the canceller fiber, whose reset restarts the countdown' do
      started = monotonic
      cancel_after(0.1) do |canceller|
        expect(canceller).to be_a(Fiber)
        expect(canceller.parent).to equal(Fiber.current)
        3.times { sleep 0.05; canceller.reset }
      end
      expect(monotonic - started).to be >= 0.15
      expect(move_on_after(0.05, with_value: :moved) { |c| sleep 0.03; c.reset; sleep 0.03; :done }).to eq(:done)
      expect(move_on_after(0.02, with_value: :moved) { |_c| sleep 1 }).to eq(:moved)
      expect { cancel_after(0.02) { |_c| sleep 1 } }.to raise_error(Polyphony::Cancel)
      expect(Fiber.current.children).to be_empty
    end

    it 'returns an armed canceller from cancel_after without a block' do
      canceller = cancel_after(0.02, with_exception: [ArgumentError, 'too slow'])
      expect(canceller).to be_a(Fiber)
      expect { sleep 1 }.to raise_error(ArgumentError, 'too slow')
      disarmed = cancel_after(0.02)
      disarmed.stop
      sleep 0.04
    end

    it "restarts a Polyphony::Timer's countdown for the calling fiber with Timer#reset" do
      timer = Polyphony::Timer.new
      started = monotonic
      value = timer.move_on_after(0.05, with_value: :moved) do
        3.times { sleep 0.03; timer.reset }
        :finished
      end
      expect(value).to eq(:finished)
      expect(monotonic - started).to be >= 0.09
      expect(timer.reset).to be(false)
      expect { timer.cancel_after(0.02) { sleep 1 } }.to raise_error(Polyphony::Cancel)
    end
  end

  describe 'IO' do
    it 'reads into a buffer at a position with read(len, buf, pos)' do
      reader, writer = IO.pipe
      writer << 'abcdefgh'
      writer.close
      buffer = +'XYZ'
      expect(reader.read(3, buffer, -1)).to equal(buffer)
      expect(buffer).to eq('XYZabc')
      reader.read(2, buffer, 1)
      expect(buffer).to eq('Xde')
      expect(reader.read(nil, buffer, 0)).to eq('fgh')
      expect(reader.read(4, buffer, 1)).to be_nil
      expect(buffer).to eq('f')
      expect { reader.read(1, buffer, 5) }.to raise_error(ArgumentError, /position/)
      expect { reader.read(1, 'frozen'.freeze, 0) }.to raise_error(FrozenError)
    ensure
      reader&.close
    end

    it 'gzips with header options between Strings and IOs, readable by zlib and gzip(1)' do
      text = 'the quick brown fox ' * 500
      mtime = Time.at(1_700_000_000)
      compressed = +''
      written = IO.gzip(text, compressed, mtime: mtime, orig_name: 'fox.txt', comment: 'a comment', level: 9)
      expect(written).to eq(compressed.bytesize)
      reader = Zlib::GzipReader.new(StringIO.new(compressed))
      expect([reader.read, reader.mtime, reader.orig_name, reader.comment]).to eq([text, mtime, 'fox.txt', 'a comment'])
      File.binwrite(path = "/tmp/polyphony-gzip-#{Process.pid}.gz", compressed)
      expect(`gzip -dc #{path}`).to eq(text)

      info = {}
      source, sink = IO.pipe
      spin { sink << compressed; sink.close }
      back = +''
      IO.gunzip(source, back, info)
      expect(back).to eq(text)
      expect(info).to eq(mtime: mtime, orig_name: 'fox.txt', comment: 'a comment')
      expect { IO.gzip('x', +'', colour: 1) }.to raise_error(ArgumentError, /colour/)
    ensure
      File.delete(path) if path && File.exist?(path)
    end

    it 'deflates and inflates between Strings' do
      deflated = +''
      IO.deflate('zzz' * 100, deflated)
      inflated = +''
      IO.inflate(deflated, inflated)
      expect(inflated).to eq('zzz' * 100)
    end

    it 'splices and tees with the instance forms, from either end' do
      src = Polyphony.pipe
      dest = Polyphony.pipe
      copy = Polyphony.pipe
      src << 'spliced data'
      expect(src.tee_to(copy, 100)).to eq(12)
      expect(src.splice_to(dest, 100)).to eq(12)
      dest.close
      expect(dest.read).to eq('spliced data')
      out = Polyphony.pipe
      expect(out.splice_from(copy, 100)).to eq(12)
      out.close
      expect(out.read).to eq('spliced data')
    end
  end

  describe 'system and backticks in fibers' do
    it "write the child's output to a $stdout or $stderr that is not the process's own" do
      out = run_with_polyphony(<<~RUBY)
        require 'stringio'
        captured_out = StringIO.new
        captured_err = StringIO.new
        results = spin do
          $stdout = captured_out
          $stderr = captured_err
          [system('echo to-out; echo to-err >&2'), `echo result; echo warning >&2`,
           system('exit 3'), $?.exitstatus, system('/nonexistent/command')]
        ensure
          $stdout = STDOUT
          $stderr = STDERR
        end.await
        p results, captured_out.string, captured_err.string
        p [Object.private_method_defined?(:system), Object.private_method_defined?(:`)]
      RUBY
      expect(out).to eq(<<~OUT)
        [true, "result\\n", false, 3, nil]
        "to-out\\n"
        "to-err\\nwarning\\n"
        [true, true]
      OUT
    end

    it "keep system's exception: option while they copy the output" do
      out = run_with_polyphony(<<~RUBY)
        require 'stringio'
        results = spin do
          $stdout = StringIO.new
          [(system('exit 3', exception: true) rescue [$!.class, $!.message]),
           (system('/nonexistent/command', exception: true) rescue $!.class)]
        ensure
          $stdout = STDOUT
        end.await
        p results
      RUBY
      expect(out).to eq(%([[RuntimeError, "Command failed with exit 3: exit 3"], Errno::ENOENT]\n))
    end

    it 'leave the output to descriptors 1 and 2 outside fibers, as stock Ruby does' do
      expect_same_as_stock(<<~RUBY)
        require 'stringio'
        $stdout = StringIO.new
        system('echo straight-to-fd-1 >/dev/null')
        kept = $stdout.string
        $stdout = STDOUT
        p kept
      RUBY
    end
  end
end
