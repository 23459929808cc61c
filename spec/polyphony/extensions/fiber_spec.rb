# frozen_string_literal: true

RSpec.describe Fiber do
  describe '#spin and #await' do
    it 'runs the block in a child fiber and returns its result' do
      fiber = spin { :done }
      expect(fiber.parent).to eq(Fiber.current)
      expect(Fiber.current.children).to eq([fiber])
      expect(fiber.state).to eq(:runnable)
      expect(fiber.await).to eq(:done)
      expect(fiber.state).to eq(:dead)
      expect(fiber.result).to eq(:done)
      expect(Fiber.current.children).to be_empty
    end

    it 'returns the result at once for a dead fiber, and join is an alias' do
      fiber = spin { 42 }
      snooze
      expect(fiber).to be_dead
      expect(fiber.join).to eq(42)
    end

    it 'raises what the fiber raised, once, in the awaiting parent' do
      fiber = spin { raise ArgumentError, 'boom' }
      expect { fiber.await }.to raise_error(ArgumentError, 'boom')
      snooze
    end

    it 'refuses to await itself' do
      expect { Fiber.current.await }.to raise_error(FiberError, /cannot await itself/)
      fiber = spin { Fiber.current.await }
      expect { fiber.await }.to raise_error(FiberError, /cannot await itself/)
    end

    it 'awaits several fibers with Fiber.await, results in order' do
      fibers = [0.03, 0.01, 0.02].map { |t| spin { sleep t; t } }
      expect(Fiber.await(*fibers)).to eq([0.03, 0.01, 0.02])
      expect(Fiber.await).to eq([])
    end

    it 'terminates the rest when one of Fiber.await raises' do
      finished = []
      slow = spin { sleep 5; finished << :slow }
      bad = spin { sleep 0.01; raise 'bad' }
      expect { Fiber.await(slow, bad) }.to raise_error(RuntimeError, 'bad')
      expect(slow).to be_dead
      expect(finished).to be_empty
    end

    it 'passes the tag (nil when none is given, false kept as given)' do
      expect(spin(:worker) { Fiber.current.tag }.await).to eq(:worker)
      expect(spin { Fiber.current.tag }.await).to be_nil
      expect(spin(false) { Fiber.current.tag }.await).to be(false)
      fiber = spin { :done }
      fiber.tag = :renamed
      expect(fiber.await && fiber.tag).to eq(:renamed)
    end

    it 'requires a block' do
      expect { spin }.to raise_error(ArgumentError, /needs a block/)
    end

    it 'refuses Fiber.yield in a spun fiber, which nobody resumed' do
      fiber = spin { Fiber.yield(1) }
      expect { fiber.await }.to raise_error(FiberError, /yield on a not resumed fiber/)
    end

    it 'lets a spun fiber resume plain fibers and enumerators' do
      fiber = spin do
        enum = [1, 2, 3].each
        plain = Fiber.new { Fiber.yield(:a); :b }
        [enum.next, enum.next, plain.resume, plain.resume]
      end
      expect(fiber.await).to eq([1, 2, :a, :b])
    end
  end

  describe 'structured concurrency' do
    it 'stops children, running their ensure blocks, before the parent ends' do
      events = []
      parent = spin do
        spin do
          sleep
        ensure
          events << :child_ensure
        end
        snooze
        events << :parent_body_done
        :parent_result
      end
      expect(parent.await).to eq(:parent_result)
      expect(events).to eq(%i[parent_body_done child_ensure])
    end

    it 'raises an uncaught exception of a child in its parent' do
      parent = spin do
        spin { raise TypeError, 'from child' }
        sleep 1
        :not_reached
      end
      expect { parent.await }.to raise_error(TypeError, 'from child')
    end

    it 'bubbles an uncaught exception up to the main fiber' do
      expect do
        spin { spin { raise 'deep' } ; sleep 1 }
        sleep 1
      end.to raise_error(RuntimeError, 'deep')
    end

    it 'ends the program with the exception and its backtrace when nobody rescues it' do
      _out, err, status = run_ruby(<<~RUBY)
        require 'polyphony'
        spin { 2 + nil }
        sleep 1
        puts 'not reached'
      RUBY
      expect(status.exitstatus).to eq(1)
      expect(err).to include("nil can't be coerced into Integer (TypeError)")
    end

    it 'terminates the main fiber\'s children at exit, running their ensure blocks' do
      out, _err, status = run_ruby(<<~RUBY)
        require 'polyphony'
        spin do
          sleep 10
        ensure
          puts 'child ensure'
        end
        snooze
        puts 'main done'
      RUBY
      expect(status).to be_success
      expect(out).to eq("main done\nchild ensure\n")
    end
  end

  describe 'control' do
    it 'interrupt / stop end a fiber quietly with a value' do
      fiber = spin { sleep 1 }
      snooze
      fiber.interrupt(:stopped)
      expect(fiber.await).to eq(:stopped)
      other = spin { sleep 1 }
      other.stop
      expect(other.await).to be_nil
    end

    it 'stops a fiber that never started' do
      ran = false
      fiber = spin { ran = true }
      fiber.stop(:early)
      expect(fiber.await).to eq(:early)
      expect(ran).to be(false)
    end

    it 'terminate ends a fiber and its children' do
      grandchild = nil
      fiber = spin do
        grandchild = spin { sleep 1 }
        sleep 1
      end
      snooze
      fiber.terminate
      fiber.await
      expect(grandchild).to be_dead
    end

    it 'raise raises in the fiber, like Kernel#raise' do
      fiber = spin do
        sleep 1
      rescue StandardError => e
        [e.class, e.message]
      end
      snooze
      fiber.raise(ArgumentError, 'why')
      expect(fiber.await).to eq([ArgumentError, 'why'])

      fiber = spin { sleep 1 }
      snooze
      fiber.raise('plain')
      expect { fiber.await }.to raise_error(RuntimeError, 'plain')
    end

    it 'cancel raises Polyphony::Cancel, an error for the parent' do
      fiber = spin { sleep 1 }
      snooze
      fiber.cancel
      expect { fiber.await }.to raise_error(Polyphony::Cancel)
    end

    it 'schedule resumes a waiting fiber with a value; a dead fiber is refused' do
      fiber = spin { suspend * 2 }
      snooze
      expect(fiber.state).to eq(:waiting)
      fiber.schedule(21)
      expect(fiber.state).to eq(:runnable)
      expect(fiber.await).to eq(42)
      expect { fiber.schedule(1) }.to raise_error(FiberError, /dead fiber/)
    end

    it 'reports :running for the current fiber' do
      expect(spin { Fiber.current.state }.await).to eq(:running)
    end
  end

  describe '#restart' do
    it 're-runs the block in the same fiber when it is alive' do
      runs = []
      fiber = spin do |value|
        runs << value
        sleep 1
      end
      snooze
      expect(fiber.restart(:again)).to equal(fiber)
      snooze
      expect(runs).to eq([nil, :again])
      fiber.stop
      fiber.await
    end

    it 'spins a replacement with the same block and tag when it is dead' do
      count = 0
      fiber = spin(:job) { count += 1 }
      fiber.await
      replacement = fiber.restart
      expect(replacement).not_to equal(fiber)
      expect(replacement.tag).to eq(:job)
      expect(replacement.parent).to eq(Fiber.current)
      replacement.await
      expect(count).to eq(2)
      expect(fiber.reset).to be_a(Fiber)
    end

    it 'refuses to restart the main fiber' do
      expect { Fiber.current.restart }.to raise_error(FiberError, /root fiber/)
    end
  end

  describe 'monitoring' do
    it 'sends [fiber, result] to monitors' do
      fiber = spin { sleep 0.01; :result }
      fiber.monitor
      expect(Fiber.current.monitor_mailbox.shift).to eq([fiber, :result])
      other = spin { :x }
      other.monitor
      other.unmonitor
      other.await
      expect(Fiber.current.monitor_mailbox).to be_empty
    end

    it 'attach_to moves a fiber to a new parent' do
      holder = spin { sleep 1 }
      fiber = spin { sleep 1 }
      fiber.attach_to(holder)
      expect(fiber.parent).to eq(holder)
      expect(holder.children).to eq([fiber])
      expect(Fiber.current.children).to eq([holder])
      holder.terminate
      holder.await
      expect(fiber).to be_dead
    end

    it 'await_all_children and shutdown_all_children' do
      3.times { |i| spin { sleep 0.01 * i; i } }
      expect(Fiber.current.await_all_children).to eq([0, 1, 2])
      stopped = []
      3.times do |i|
        spin do
          sleep 1
        ensure
          stopped << i
        end
      end
      snooze
      Fiber.current.shutdown_all_children
      expect(stopped.sort).to eq([0, 1, 2])
      expect(Fiber.current.children).to be_empty
    end
  end

  describe 'messaging' do
    it 'delivers messages in order' do
      fiber = spin { [Fiber.current.receive, Fiber.current.receive] }
      fiber << :a
      fiber.send(:b)
      expect(fiber.await).to eq(%i[a b])
    end

    it 'receive_all_pending takes what is there without waiting' do
      fiber = spin { suspend; receive_all_pending }
      snooze
      fiber << 1 << 2
      fiber.schedule
      expect(fiber.await).to eq([1, 2])
    end

    it 'a fiber waiting in receive can be stopped cleanly' do
      fiber = spin { Fiber.current.receive }
      snooze
      fiber.stop(:gone)
      expect(fiber.await).to eq(:gone)
      fiber << :late # nobody waits any more: queued, no error, no wake-up of a dead fiber
      snooze
    end
  end
end
