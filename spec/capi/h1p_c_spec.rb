# frozen_string_literal: true

require 'tmpdir'

# The C ABI, from a C program compiled with cc against include/polyphony.h and the static
# library (tests/c/h1p_test.c).
RSpec.describe 'the C ABI (include/polyphony.h)' do
  it 'parses requests and responses for a C program, zero-copy and pull' do
    _out, err, status = run_command('cargo', 'build', '--release', '--locked', '-q', '-p', 'polyphony-capi',
                                    limit: 600)
    expect(status).to be_success, err
    Dir.mktmpdir do |dir|
      binary = File.join(dir, 'h1p_test')
      _out, err, status = run_command(
        'cc', '-std=c11', '-Wall', '-Wextra', '-Werror', '-D_POSIX_C_SOURCE=200809L', '-Iinclude',
        'tests/c/h1p_test.c', 'target/release/libpolyphony_capi.a', '-lpthread', '-ldl', '-lm',
        '-o', binary
      )
      expect(status).to be_success, err
      out, err, status = run_command(binary)
      expect(err).to eq('')
      expect(status).to be_success
      expect(out).to eq("h1p C ABI: all checks passed\n")
    end
  end
end
