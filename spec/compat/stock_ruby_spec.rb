# frozen_string_literal: true

# Loading Polyphony must leave stock Ruby's behaviour as it was: each script runs plain and with
# Polyphony (SpecHelpers#expect_same_as_stock) and must print the same.
RSpec.describe 'stock Ruby with Polyphony loaded' do
  describe 'Timeout.timeout' do
    it 'interrupts a blocking read in a thread that spun no fiber' do
      out = expect_same_as_stock(<<~RUBY)
        require 'timeout'
        r, _w = IO.pipe
        t = Thread.new do
          Timeout.timeout(0.3) { r.read(1) }
        rescue Timeout::Error => e
          e.message
        end
        p t.join(3)&.value
      RUBY
      expect(out).to eq("\"execution expired\"\n")
    end

    it 'raises to its caller: the block cannot rescue it as Timeout::Error or StandardError' do
      out = expect_same_as_stock(<<~RUBY)
        require 'timeout'
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        [Timeout::Error, StandardError].each do |rescued|
          result = begin
            Timeout.timeout(0.2) do
              begin
                sleep 1
              rescue rescued
                :rescued_inside
              end
            end
          rescue Timeout::Error => e
            [e.class, e.message]
          end
          p result
        end
        # With a class of its own, the block sees that class, as stock Ruby raises it there.
        p(Timeout.timeout(0.1, ArgumentError, 'late') { begin; sleep 1; rescue ArgumentError => e; e.message; end })
        p Process.clock_gettime(Process::CLOCK_MONOTONIC) - started < 1.5
      RUBY
      expect(out).to eq(<<~OUT)
        [Timeout::Error, "execution expired"]
        [Timeout::Error, "execution expired"]
        "late"
        true
      OUT
    end

    it 'stops net/http, which rescues and retries its own timeouts, when the server is slow' do
      out = expect_same_as_stock(<<~RUBY)
        require 'timeout'
        require 'net/http'
        require 'socket'
        server = TCPServer.new('127.0.0.1', 0)
        Thread.new do
          loop do
            conn = server.accept
            Thread.new(conn) do |c|
              c.readpartial(4096)
              sleep 1
              c.write("HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
              c.close
            rescue IOError, SystemCallError
            end
          end
        end
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        result = begin
          Timeout.timeout(0.3) { Net::HTTP.get(URI("http://127.0.0.1:\#{server.addr[1]}/")) }
        rescue Timeout::Error => e
          e.class
        end
        p [result, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started < 0.9]
        http = Net::HTTP.new('127.0.0.1', server.addr[1])
        http.read_timeout = 0.3
        http.max_retries = 0
        p(begin; http.get('/'); rescue Net::ReadTimeout => e; e.class; end)
      RUBY
      expect(out).to eq("[Timeout::Error, true]\nNet::ReadTimeout\n")
    end
  end

  it 'leaves the stock blocking methods themselves in place until a fiber is spun' do
    expect_same_as_stock(<<~RUBY)
      require 'socket'
      p [Thread, Thread::Queue, TCPSocket.singleton_class, Process.singleton_class].map(&:ancestors).map(&:first)
      p IO.instance_method(:write).owner, Thread.instance_method(:join).owner
    RUBY
    # IO#read alone has a native wrapper in front from the start, for Polyphony's third argument
    # (the position in the buffer); with up to two arguments it is the stock method.
    out = run_with_polyphony(<<~RUBY)
      p IO.ancestors.take_while { |m| m != IO }
      r, w = IO.pipe
      w << 'abcdef'
      w.close
      buf = +'x'
      p [r.read(2), r.read(2, buf).dup, buf.dup, r.read, r.read(1), r.read(nil, buf), buf]
    RUBY
    expect(out).to eq("[Polyphony::ReadAtPosition]\n" + '["ab", "cd", "cd", "ef", nil, "", ""]' + "\n")
  end

  it 'keeps Kernel#gets and #system private once a fiber has run (Ripper asks sources for gets)' do
    out = expect_same_as_stock(<<~RUBY)
      require 'ripper'
      spin {}.await if defined?(Polyphony)
      p ['source'.respond_to?(:gets), Object.private_method_defined?(:system)]
      p Ripper.sexp('1 + 2').flatten.grep(String)
    RUBY
    expect(out).to eq("[false, true]\n[\"1\", \"2\"]\n")
  end

  it 'lets Thread#wakeup end a bare sleep in another thread' do
    out = expect_same_as_stock(<<~RUBY)
      t = Thread.new { sleep; :woken }
      Thread.pass until t.status == 'sleep' || !t.alive?
      t.wakeup
      p t.join(3)&.value
    RUBY
    expect(out).to eq(":woken\n")
  end

  it 'sets $_ and $. in IO#gets and IO#readline' do
    out = expect_same_as_stock(<<~RUBY)
      r, w = IO.pipe
      w.puts 'one', 'two', 'three'
      w.close
      r.gets
      p [$_, $.]
      r.readline
      p [$_, $.]
      def in_a_method(io) = io.gets && $_
      p [in_a_method(r), $_]
    RUBY
    expect(out).to eq("[\"one\\n\", 1]\n[\"two\\n\", 2]\n[\"three\\n\", \"two\\n\"]\n")
  end

  it 'runs Monitor, ConditionVariable and concurrent-ruby futures in threads' do
    expect_same_as_stock(<<~RUBY)
      require 'monitor'
      require 'concurrent'
      monitor = Monitor.new
      ready = monitor.new_cond
      items = []
      consumer = Thread.new do
        monitor.synchronize do
          ready.wait_while { items.size < 3 }
          items.dup
        end
      end
      3.times { |i| Thread.new { sleep 0.01 * i; monitor.synchronize { items << i; ready.signal } }.join }
      p consumer.join(3)&.value&.sort

      lock = Mutex.new
      cond = ConditionVariable.new
      done = false
      waiter = Thread.new { lock.synchronize { cond.wait(lock, 2) until done; :signalled } }
      sleep 0.05
      lock.synchronize { done = true; cond.signal }
      p waiter.join(3)&.value

      futures = 4.times.map { |i| Concurrent::Future.execute { sleep 0.02; i * i } }
      p futures.map { |f| f.value(3) }
      p Concurrent::Promises.zip(*2.times.map { |i| Concurrent::Promises.future { i + 1 } }).value!(3)
    RUBY
  end
end
