# frozen_string_literal: true

# Polyphony 1.6's public API, as its documentation gives it, and what this project does with
# each entry: :same, :differs (on purpose; the note says how and why), :option (a keyword or
# argument of a method, shown by the specs), or :absent (the note says why). The table in
# docs/fibers.md is made from this list (`ruby spec/support/polyphony_api.rb --table`), and
# spec/compat/polyphony_api_census_spec.rb checks that every method the list says exists does.
#
# `ruby -Ilib spec/support/polyphony_api.rb` counts the methods that exist in the tree it runs
# in (how the figures before and after issue 24 were taken).
module PolyphonyAPI
  ENTRIES = [
    # Kernel (Polyphony's GlobalAPI, private on every object)
    ['Kernel#spin', :same], ['Kernel#spin_loop', :same], ['Kernel#spin_scope', :same],
    ['Kernel#after', :same], ['Kernel#every', :same], ['Kernel#cancel_after', :same],
    ['Kernel#move_on_after', :same], ['Kernel#sleep', :differs,
     'stock `Kernel#sleep` in a thread whose root fiber has no fiber and no timeout, so `Thread#wakeup` still ends it'],
    ['Kernel#snooze', :same], ['Kernel#suspend', :same], ['Kernel#receive', :same],
    ['Kernel#receive_all_pending', :same], ['Kernel#receive_loop', :same], ['Kernel#supervise', :same],
    ['Kernel#throttled_loop', :same],
    ['Kernel#trap', :differs, "stock Ruby's: handlers run in the main thread as usual, and wake fibers through queues and events"],
    ['Kernel#system', :same], ['Kernel#`', :same],
    ['Kernel#gets', :same],
    ['spin_loop(rate:, interval:)', :option], ['throttled_loop(rate, interval:, count:)', :option],
    ['move_on_after(with_value:) { |canceller| }', :option], ['cancel_after(with_exception:) { |canceller| }', :option],
    ['cancel_after(interval) without a block', :option],
    # Fiber
    ['Fiber#spin', :same], ['Fiber#await', :same], ['Fiber#join', :same], ['Fiber#value', :same],
    ['Fiber#schedule', :same], ['Fiber#schedule_with_priority', :same], ['Fiber#state', :same],
    ['Fiber#dead?', :same], ['Fiber#running?', :same], ['Fiber#result', :same],
    ['Fiber#tag', :same], ['Fiber#tag=', :same], ['Fiber#parent', :same], ['Fiber#children', :same],
    ['Fiber#thread', :same], ['Fiber#main?', :same], ['Fiber#location', :differs,
     "the block's `file:line` unless backtrace chaining is :full (recording callers costs at every spin)"],
    ['Fiber#caller', :differs, 'as `location`, per ancestor, unless backtrace chaining is :full'],
    ['Fiber#interrupt', :same], ['Fiber#stop', :same], ['Fiber#move_on', :same],
    ['Fiber#terminate', :same], ['Fiber#graceful_shutdown?', :same], ['Fiber#graceful_shutdown=', :same],
    ['Fiber#cancel', :same], ['Fiber#raise', :same], ['Fiber#interject', :same], ['Fiber#kill', :same],
    ['Fiber#restart', :same], ['Fiber#reset', :same], ['Fiber#monitor', :same], ['Fiber#unmonitor', :same],
    ['Fiber#monitors', :same], ['Fiber#monitor_mailbox', :same], ['Fiber#supervise', :same],
    ['Fiber#attach_to', :same], ['Fiber#attach_and_monitor', :same], ['Fiber#detach', :same],
    ['Fiber#attach_all_children_to', :same], ['Fiber#await_all_children', :same],
    ['Fiber#shutdown_all_children', :same], ['Fiber#terminate_all_children', :same],
    ['Fiber#<<', :same], ['Fiber#send', :same], ['Fiber#receive', :same],
    ['Fiber#receive_all_pending', :same], ['Fiber#receive_loop', :same], ['Fiber#mailbox', :same],
    ['Fiber#inspect', :same],
    ['Fiber#set_caller', :absent, 'callers are recorded by `spin` itself (backtrace chaining :full)'],
    ['Fiber#oob', :absent, 'out-of-band trap fibers: trap handlers here are stock Ruby\'s'],
    ['Fiber.await', :same], ['Fiber.join', :same], ['Fiber.select', :same],
    ['Fiber.schedule_priority_oob_fiber', :absent, 'trap handlers are stock Ruby\'s (see Kernel#trap)'],
    ['supervise(restart: :always | :on_error | true, on_done:, on_error:)', :option],
    ['terminate(graceful)', :option], ['restart(value)', :option],
    ['main fiber tagged :main', :option],
    # Thread
    ['Thread#main_fiber', :same], ['Thread#<<', :same], ['Thread#send', :differs,
     "stock `Object#send` (calling a method by name) keeps its meaning; use `<<`"],
    ['Thread#await', :same], ['Thread#join', :differs, "stock Ruby's contract: returns the thread (waits letting fibers run); `await` returns the value"],
    ['Thread#on_idle', :same], ['Thread#idle_gc_period=', :same],
    ['Thread#raise', :differs, "stock Ruby's (it interrupts a thread waiting in the kernel at once)"],
    ['Thread#kill', :differs, "stock Ruby's (the thread's fibers' ensure blocks run as it unwinds)"],
    ['Thread#result', :absent, '`Thread#value` gives it; keeping it would mean wrapping stock `Thread#initialize`'],
    ['Thread#location', :absent, 'would mean wrapping stock `Thread#initialize` to keep the block'],
    # Exceptions
    ['Exception#source_fiber', :same], ['Exception#source_fiber=', :same],
    ['Exception.__disable_sanitized_backtrace__=', :same],
    ['backtrace chaining (spinning fibers appended to backtraces)', :option],
    ['Exception#raising_fiber', :absent, "would need Exception#initialize changed for every exception; `source_fiber` says which fiber it ended"],
    ['SIGTERM ends the program with SystemExit', :differs,
     "stock Ruby's `SignalException`: Polyphony here installs no signal handler of its own"],
    # Queue and friends
    ['Polyphony::Queue#push', :same], ['Polyphony::Queue#<<', :same], ['Polyphony::Queue#enq', :same],
    ['Polyphony::Queue#shift', :same], ['Polyphony::Queue#deq', :same], ['Polyphony::Queue#pop', :same],
    ['Polyphony::Queue#unshift', :same], ['Polyphony::Queue#shift_all', :same], ['Polyphony::Queue#shift_each', :same],
    ['Polyphony::Queue#delete', :same], ['Polyphony::Queue#cap', :same], ['Polyphony::Queue#capped?', :same],
    ['Polyphony::Queue#clear', :same], ['Polyphony::Queue#size', :same], ['Polyphony::Queue#empty?', :same],
    ['Polyphony::Queue#pending?', :same], ['Polyphony::Queue#close', :same], ['Polyphony::Queue#closed?', :same],
    ['Polyphony::Queue#flush_waiters', :same],
    ['Polyphony::Event#signal', :same], ['Polyphony::Event#await', :same],
    ['Polyphony::Mutex#synchronize', :same], ['Polyphony::Mutex#lock', :same], ['Polyphony::Mutex#unlock', :same],
    ['Polyphony::Mutex#try_lock', :same], ['Polyphony::Mutex#locked?', :same], ['Polyphony::Mutex#owned?', :same],
    ['Polyphony::ConditionVariable#wait', :same], ['Polyphony::ConditionVariable#signal', :same],
    ['Polyphony::ConditionVariable#broadcast', :same],
    ['Polyphony::Monitor#synchronize', :same], ['Polyphony::Monitor#enter', :same], ['Polyphony::Monitor#exit', :same],
    ['Polyphony::Monitor#try_enter', :same], ['Polyphony::Monitor#mon_locked?', :same],
    ['Polyphony::Monitor#mon_owned?', :same], ['Polyphony::Monitor#new_cond', :same],
    ['Polyphony::ResourcePool#acquire', :same], ['Polyphony::ResourcePool#available', :same],
    ['Polyphony::ResourcePool#limit', :same], ['Polyphony::ResourcePool#size', :same],
    ['Polyphony::ResourcePool#discard!', :same], ['Polyphony::ResourcePool#fill!', :same],
    ['calls delegated to a pooled resource (pool.query)', :option],
    ['Polyphony::Throttler#call', :same], ['Polyphony::Throttler#process', :same], ['Polyphony::Throttler#stop', :same],
    ['Throttler.new(rate:) / .new(interval:)', :option],
    ['Polyphony::Timer#after', :same], ['Polyphony::Timer#every', :same], ['Polyphony::Timer#sleep', :same],
    ['Polyphony::Timer#cancel_after', :same], ['Polyphony::Timer#move_on_after', :same],
    ['Polyphony::Timer#reset', :same], ['Polyphony::Timer#stop', :same],
    ['Timer.new(resolution:)', :option],
    ['Polyphony::ThreadPool#process', :same], ['Polyphony::ThreadPool#cast', :same],
    ['Polyphony::ThreadPool#busy?', :same], ['Polyphony::ThreadPool#size', :same],
    ['Polyphony::ThreadPool.process', :same],
    # Processes and pipes
    ['Polyphony.fork', :same], ['Polyphony.watch_process', :same], ['Polyphony.pipe', :same],
    ['Polyphony::Pipe#<<', :same], ['Polyphony::Pipe#write', :same], ['Polyphony::Pipe#read', :same],
    ['Polyphony::Pipe#readpartial', :same], ['Polyphony::Pipe#close', :same], ['Polyphony::Pipe#closed?', :same],
    ['Polyphony::Pipe#fds', :same], ['Polyphony::Pipe#read_loop', :same], ['Polyphony::Pipe#splice_from', :same],
    ['Polyphony::Pipe#tee_from', :same],
    # IO and sockets
    ['IO#read_loop', :same], ['IO#feed_loop', :same], ['IO#wait_readable', :same], ['IO#wait_writable', :same],
    ['IO#splice_from', :same], ['IO#splice_to', :same], ['IO#tee_from', :same],
    ['read(len, buf, buf_pos)', :option],
    ['IO.splice', :same], ['IO.double_splice', :same], ['IO.tee', :same],
    ['IO.gzip', :same], ['IO.gunzip', :same], ['IO.deflate', :same], ['IO.inflate', :same],
    ['gzip(src, dest, mtime:, orig_name:, comment:, level:), String ends, gunzip info', :option],
    ['child output of system and backticks to $stdout/$stderr objects (in fibers)', :option],
    ['IO#readpartial(len, buf, buf_pos, raise_on_eof)', :differs,
     "stock Ruby's (two arguments): its buffer position and EOF flag would change a core method's contract"],
    ['Socket#accept_loop', :same], ['TCPServer#accept_loop', :same], ['Socket#recv_loop', :same],
    ['Socket#read_loop', :same], ['Socket#feed_loop', :same],
    ['Polyphony::Net.tcp_listen', :same], ['Polyphony::Net.tcp_connect', :same],
    ['OpenSSL::SSL::SSLSocket read_loop, accept_loop', :absent, 'TLS here is rustls (Polyphony::TLS), not OpenSSL sockets'],
    ['Polyphony::Trace / Polyphony::Debugger', :absent, 'debugging tools outside the runtime'],
  ].freeze

  class << self
    # Whether `name` (Owner#method, Owner.method) exists in this Ruby.
    def exists?(name)
      owner, kind, method = name.match(/\A(.+?)(#|\.)(.+)\z/).captures
      target = Object.const_get(owner)
      if kind == '.'
        target.respond_to?(method)
      elsif owner == 'Kernel' # (private on every object, as Kernel's own methods are)
        Object.private_method_defined?(method) || Object.method_defined?(method)
      else
        target.public_method_defined?(method)
      end
    rescue NameError
      false
    end

    # The entries that name a method (not an option, a signature or a behaviour).
    def methods
      ENTRIES.reject { |name, status| %i[option absent].include?(status) || name.match?(%r{[( /]}) }.map(&:first)
    end

    def table
      rows = ENTRIES.map do |name, status, note|
        "| `#{name}` | #{status == :option ? 'same' : status} | #{note} |"
      end
      ['| Polyphony 1.6 | here | why it differs |', '| --- | --- | --- |', *rows].join("\n")
    end
  end
end

if $PROGRAM_NAME == __FILE__
  if ARGV.include?('--table')
    puts PolyphonyAPI.table
  else
    require 'polyphony'
    documented = PolyphonyAPI.methods
    present = documented.count { |name| PolyphonyAPI.exists?(name) }
    puts "#{present} of #{documented.size} documented methods exist"
    puts "missing: #{(documented.reject { |name| PolyphonyAPI.exists?(name) }).join(' ')}"
  end
end
