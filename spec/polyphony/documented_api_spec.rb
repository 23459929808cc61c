# frozen_string_literal: true

# Parts of Polyphony's public API that its documentation gives and that this project lacked
# (docs/fibers.md has the table of what exists).
RSpec.describe "Polyphony's documented API" do
  describe Fiber do
    it 'answers value, running?, location, thread and main?' do
      line = __LINE__ + 1
      fiber = spin { :done }
      expect(fiber.location).to eq("#{__FILE__}:#{line}")
      expect(fiber.thread).to eq(Thread.current)
      expect([fiber.running?, fiber.main?]).to eq([true, false])
      expect(fiber.value).to eq(:done)
      expect(fiber.running?).to be(false)
      expect(Fiber.current.main?).to be(true)
      expect(Thread.current.main_fiber).to equal(Fiber.current)
      expect(Thread.main.main_fiber.tag).to eq(:main)
    end

    it 'hands out its mailbox and loops over it with receive_loop' do
      seen = []
      fiber = spin { receive_loop { |message| break if message == :stop; seen << message } }
      fiber << 1 << 2
      fiber.mailbox << :stop
      fiber.await
      expect(seen).to eq([1, 2])
    end

    it 'detaches from its parent, and moves all children to another fiber' do
      detached = nil
      parent = spin do
        detached = spin { sleep 0.05; :child }.detach
        2.times { spin { sleep 0.05 } }
        suspend
      end
      snooze
      expect(detached.parent).to equal(Fiber.current) # the thread's main fiber
      adopter = spin { suspend }
      parent.attach_all_children_to(adopter)
      expect([parent.children.size, adopter.children.size]).to eq([0, 2])
      parent.stop
      parent.await
      expect(adopter.children.size).to eq(2) # they did not end with their former parent
      expect(detached.await).to eq(:child)
      adopter.stop
      adopter.await
    end

    it 'says which fiber an uncaught exception ended: Exception#source_fiber' do
      failing = nil
      error = begin
        failing = spin { raise 'boom' }
        sleep 1
      rescue RuntimeError => e
        e
      end
      expect([error.message, error.source_fiber]).to eq(['boom', failing])
      expect(RuntimeError.new.source_fiber).to be_nil
    end

    it 'selects the first fiber to end, with its result' do
      slow = spin { sleep 0.05; :slow }
      fast = spin { sleep 0.01; :fast }
      expect(Fiber.select(slow, fast)).to eq([fast, :fast])
      expect(Fiber.select([slow])).to eq([slow, :slow])
      expect { Fiber.select }.to raise_error(ArgumentError)
    end
  end

  describe Thread do
    it 'sends a message to a thread’s main fiber with <<' do
      out = run_with_polyphony(<<~RUBY)
        thread = Thread.new { receive * 2 }
        sleep 0.01 until thread.main_fiber
        thread << 21
        p thread.join(5)&.value
        p(begin; Thread.new { :no_fiber }.tap(&:join) << 1; rescue ThreadError; :refused; end)
      RUBY
      expect(out).to eq("42\n:refused\n")
    end
  end

  it 'has Queue#enq, #deq, #capped? and #shift_each, Mutex#try_lock, ThreadPool#busy? and Pipe#fds' do
    queue = Polyphony::Queue.new
    queue.enq(1)
    queue.enq(2)
    expect(queue.deq).to eq(1)
    queue << 3
    items = []
    queue.shift_each { |item| items << item }
    expect([items, queue.empty?, queue.capped?, Polyphony::Queue.new(2).capped?]).to eq([[2, 3], true, false, true])

    mutex = Polyphony::Mutex.new
    expect([mutex.try_lock, mutex.try_lock]).to eq([true, false])
    mutex.unlock

    pool = Polyphony::ThreadPool.new(1)
    expect(pool.busy?).to be(false)
    job = spin { pool.process { Kernel.sleep 0.05 } }
    snooze
    expect(pool.busy?).to be(true)
    job.await
    expect(pool.busy?).to be(false)
    pool.stop

    pipe = Polyphony.pipe
    expect(pipe.fds).to eq([pipe.read_io.fileno, pipe.write_io.fileno])
    pipe.close
    pipe.close_read
  end

  it 'closes a Queue as Thread::Queue closes: pending? shifters get nil, pushers an error' do
    queue = Polyphony::Queue.new(1)
    queue << :a
    pusher = spin { queue << :b; :pushed }
    snooze
    expect([queue.shift, queue.pending?]).to eq([:a, false]) # (the pusher is let in)
    pusher.await
    expect(queue.shift).to eq(:b)
    shifter = spin { queue.shift }
    snooze
    expect(queue.pending?).to be(true)
    queue.close
    expect([shifter.await, queue.closed?, queue.shift]).to eq([nil, true, nil])
    expect { queue << :c }.to raise_error(ClosedQueueError)
  end

  it 'takes Throttler.new(rate:) and supervise(restart: true, on_done:, on_error:)' do
    throttler = Polyphony::Throttler.new(rate: 50)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    3.times { throttler.call {} }
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be >= 0.035

    done = []
    errors = []
    runs = 0
    supervisor = spin do
      spin(:flaky) do
        runs += 1
        raise 'boom' if runs == 1
      end
      supervise(restart: true, on_done: ->(f, _) { done << f.tag }, on_error: ->(f, e) { errors << [f.tag, e.message] }) do |fiber, _|
        fiber.parent.terminate if runs == 2 # (ends the supervision after the restart ran)
      end
    end
    supervisor.await
    expect([runs, errors]).to eq([2, [[:flaky, 'boom']]])
    expect(done).to eq(%i[flaky flaky])
  end

  it 'has IO#recv_loop and Polyphony::Net.tcp_listen / tcp_connect' do
    server = Polyphony::Net.tcp_listen('127.0.0.1', 0, reuse_addr: true, reuse_port: true, backlog: 16)
    port = server.local_address.ip_port
    spin do
      client = Polyphony::Net.tcp_connect('127.0.0.1', port)
      client << 'hello'
      client.close
    end
    connection = server.accept
    received = +''
    connection.recv_loop { |data| received << data }
    expect(received).to eq('hello')
    expect { Polyphony::Net.tcp_listen('127.0.0.1') }.to raise_error(ArgumentError)
  ensure
    server&.close
  end

  it "has ResourcePool#fill!, #discard! and calls delegated to a resource" do
    made = 0
    pool = Polyphony::ResourcePool.new(limit: 2) { made += 1; +"resource #{made}" }
    pool.fill!
    expect([pool.size, pool.available, made]).to eq([2, 2, 2])
    expect(pool.upcase).to eq('RESOURCE 1')
    # (available now: resource 2, then resource 1, given back by the call above)
    expect(pool.acquire { |resource| pool.discard!; resource }).to eq('resource 2')
    expect([pool.size, pool.available]).to eq([1, 1])
    expect(pool.acquire { |outer| pool.acquire { |inner| [outer, inner] } }).to eq(['resource 1'] * 2)
    pool.fill!
    expect([pool.size, pool.available, made]).to eq([2, 2, 3])
    expect { pool.discard! }.to raise_error(ArgumentError)
  end
end
