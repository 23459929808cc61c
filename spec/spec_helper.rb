# frozen_string_literal: true

require 'json'
require 'open3'
require 'rbconfig'
require_relative '../lib/polyphony'

ROOT = File.expand_path('..', __dir__)
require_relative 'support/tipi_process'

module SpecHelpers
  # Runs a command in ROOT, killed after `limit` seconds; returns [stdout, stderr, status].
  def run_command(*command, limit: 60)
    env = command.first.is_a?(Hash) ? command.shift : {}
    out, err, status = Open3.capture3(env, 'timeout', limit.to_s, *command, chdir: ROOT, stdin_data: '')
    raise "#{command.inspect} hung for #{limit} s\n#{err}" if status.exitstatus == 124

    [out, err, status]
  end

  # Runs a Ruby script with polyphony on the load path in a child process.
  def run_ruby(script, *args)
    run_command(RbConfig.ruby, '-I', File.join(ROOT, 'lib'), '-e', script, *args)
  end

  # Runs `script` in a child Ruby twice, plain and after `require 'polyphony'` (on the backend
  # this suite runs on); both must succeed and print the same, which is returned. The scripts
  # print coarse facts (classes, values, "fast"), never raw timings, and bound their own waits
  # so that a hang shows as a difference, not a stuck suite.
  def expect_same_as_stock(script, limit: 30)
    stock, err, status = run_command(RbConfig.ruby, '-e', script, limit: limit)
    raise "the script fails on stock Ruby:\n#{err}" unless status.success?

    expect(run_with_polyphony(script, limit: limit)).to eq(stock)
    stock
  end

  # Runs `script` in a child Ruby after `require 'polyphony'`, killed after `limit` seconds (a
  # hang fails the example, not the suite); it must succeed and print nothing on stderr. Its
  # stdout.
  def run_with_polyphony(script, limit: 20)
    out, err, status = run_command(RbConfig.ruby, '-I', File.join(ROOT, 'lib'), '-rpolyphony', '-e', script,
                                   limit: limit)
    expect(err).to eq('')
    expect(status).to be_success
    out
  end

  # Builds the C ABI's static library (release) and compiles `source` against it and
  # include/polyphony.h into `dir`; returns the binary's path.
  def build_c_program(source, dir)
    _out, err, status = run_command('cargo', 'build', '--release', '--locked', '-q', '-p', 'polyphony-capi',
                                    limit: 600)
    raise "cargo build failed:\n#{err}" unless status.success?

    binary = File.join(dir, File.basename(source, '.c'))
    _out, err, status = run_command(
      'cc', '-std=c11', '-Wall', '-Wextra', '-Werror', '-D_DEFAULT_SOURCE', '-Iinclude', '-Itests/c', source,
      'target/release/libpolyphony_capi.a', '-lpthread', '-ldl', '-lm', '-o', binary
    )
    raise "cc failed:\n#{err}" unless status.success?

    binary
  end

  # Python's h2 as a client (spec/support/h2_client.py: `mode` names what it does), for what
  # curl and nghttp do not do; what it saw, from its JSON.
  def h2_client(mode, port, *args)
    out, err, status = run_command('/usr/bin/python3', File.join(ROOT, 'spec', 'support', 'h2_client.py'), mode,
                                   port.to_s, *args)
    raise "h2_client.py #{mode} failed:\n#{err}" unless status.success?

    JSON.parse(out)
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # The block's value once it is truthy, looked at every 50 ms for at most `limit` seconds (then
  # its last value).
  def wait_for(limit = 10)
    deadline = monotonic + limit
    sleep 0.05 until yield || monotonic > deadline
    yield
  end
end

RSpec.configure do |config|
  config.include SpecHelpers
  config.disable_monkey_patching!
  config.order = :defined
  # Every example starts with no children of the main fiber left from the one before.
  config.after do
    Fiber.current.shutdown_all_children
    Fiber.current.receive_all_pending
  end
end
