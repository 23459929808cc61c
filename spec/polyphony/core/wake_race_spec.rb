# frozen_string_literal: true

# A trap handler runs wherever Ruby code in the main thread happens to be, so it can wake a
# fiber between the fiber's look at its condition and its parking. Each example plays such a
# handler at one of those points (a TracePoint runs it there, once) and checks that the wake-up
# reaches the fiber, and is not left over to resume the fiber's next wait by mistake.
RSpec.describe 'A wake-up between a check and the parking' do
  # Runs the block, and `action` once within it: at the first `event` (:c_return, :return) of
  # `method_id` whose receiver is `receiver` (or, with `path`, seen from a file named so).
  def interject(event, method_id, action, receiver: nil, path: nil)
    done = false
    trace = TracePoint.new(event) do |tp|
      next if done || tp.method_id != method_id
      next if receiver && !tp.self.equal?(receiver)
      next if path && !tp.path.end_with?(path)

      done = true
      action.call
    end
    trace.enable(target_thread: Thread.current)
    yield
  ensure
    trace&.disable
  end

  # Whether the current fiber's next wait waits (a wake-up left over in the run queue would
  # end it at once, with nil).
  def next_wait_waits?
    event = Polyphony::Event.new
    spin { sleep 0.02; event.signal(:timer) }
    event.await == :timer
  end

  # What the block (a wait, given 1 s) returns with `action` interjected in it (see
  # #interject); checks that the wake-up was not left over for the fiber's next wait.
  def interjected(event, method_id, action, **filter, &wait)
    value = interject(event, method_id, action, **filter) { move_on_after(1, &wait) }
    expect(next_wait_waits?).to be(true)
    value
  end

  it 'reaches a Queue#shift that had found the queue empty and was not listed yet' do
    queue = Polyphony::Queue.new
    items = queue.instance_variable_get(:@items)
    expect(interjected(:c_return, :empty?, -> { queue << :item }, receiver: items) { queue.shift }).to eq(:item)
  end

  it 'reaches a Queue#shift that was listed and had not parked yet' do
    queue = Polyphony::Queue.new
    waiters = queue.instance_variable_get(:@shifters).instance_variable_get(:@fibers)
    expect(interjected(:c_return, :[]=, -> { queue << :item }, receiver: waiters) { queue.shift }).to eq(:item)
  end

  it 'reaches an Event#await that had found no signal yet' do
    event = Polyphony::Event.new
    signal = -> { event.signal(:signalled) }
    expect(interjected(:c_return, :current, signal, path: 'wait_list.rb') { event.await }).to eq(:signalled)
  end

  it 'reaches a receive whose mailbox was being made' do
    receiver = spin do
      fiber = Fiber.current
      interject(:return, :initialize, -> { fiber << :message }, path: 'queue.rb') do
        move_on_after(1) { fiber.receive }
      end
    end
    expect(receiver.await).to eq(:message)
  end
end
