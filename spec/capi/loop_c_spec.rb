# frozen_string_literal: true

require 'tmpdir'

# The event loop's C ABI, from a C program compiled with cc (tests/c/loop_test.c), on both
# backends.
RSpec.describe 'the event loop from C (include/polyphony.h)' do
  it 'reads, writes, accepts, polls, wakes and cancels on io_uring and on epoll' do
    _out, err, status = run_command('cargo', 'build', '--release', '--locked', '-q', '-p', 'polyphony-capi',
                                    limit: 600)
    expect(status).to be_success, err
    Dir.mktmpdir do |dir|
      binary = File.join(dir, 'loop_test')
      _out, err, status = run_command(
        'cc', '-std=c11', '-Wall', '-Wextra', '-Werror', '-D_DEFAULT_SOURCE', '-Iinclude',
        'tests/c/loop_test.c', 'target/release/libpolyphony_capi.a', '-lpthread', '-ldl', '-lm', '-o', binary
      )
      expect(status).to be_success, err
      out, err, status = run_command(binary)
      expect(err).to eq('')
      expect(status).to be_success
      expect(out).to eq("event loop C ABI: all checks passed\n")
    end
  end
end
